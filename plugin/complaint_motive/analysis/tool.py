"""The analyzer as a tool an agent can call: the argument shape shared by the LangChain tool
and the MCP server, and ``analyzer_tool`` (what ``MotiveAnalyzer.as_tool()`` returns).

The arguments are kept flat and described field by field, so a tool-calling model can fill
them from a helpdesk ticket; the model reads back a compact summary of the result (the
stable keys), and the application gets the whole ``MotiveAnalysis`` as the artifact.

>>> tool = MotiveAnalyzer.from_settings().as_tool()          # doctest: +SKIP
>>> message = tool.invoke({"type": "tool_call", "id": "call-1", "name": tool.name,
...                        "args": {"text": "退款半个月还没到账"}})  # doctest: +SKIP
>>> message.artifact.primary_motive.id                       # doctest: +SKIP
'compensation'
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ComplaintMotiveError, InputError
from ..knowledge.taxonomy import ChannelId

if TYPE_CHECKING:
    from ..analyzer import MotiveAnalyzer
    from .schema import MotiveAnalysis

TOOL_NAME = "analyze_complaint"
TOOL_DESCRIPTION = (
    "Explain a customer complaint: the customer's motive (venting, respect, compensation, "
    "recognition, self_expression, suggestion, information, revenge, leverage; or unknown / "
    "not_a_complaint), their psychological stage, risk flags, what the agent should do and "
    "never say, and a reply draft for the agent, citing the complaint-handling guidance. "
    "Pass the customer's text, or a conversation as turns.")


class ConversationTurn(BaseModel):
    """One turn of a helpdesk conversation."""

    role: Literal["customer", "agent"] = Field(
        description="customer: the words analysed; agent: context only")
    text: str = Field(description="what was said in this turn")


class ComplaintArgs(BaseModel):
    """What an agent passes to analyse one complaint: ``text`` or ``turns``, not both."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(
        None, description="the customer's complaint, verbatim (a transcript written as "
        "'[1] 客户: …' lines also works)")
    turns: list[ConversationTurn] | None = Field(
        None, description="the conversation, oldest turn first, instead of text")
    language: Literal["zh", "en"] | None = Field(
        None, description="language of the reply draft and steps; default: the complaint's")
    channel: ChannelId | None = Field(
        None, description="where the text was written, when known")

    def record(self) -> dict[str, Any]:
        """The analyzer's input record; an ``InputError`` unless exactly one of ``text`` and
        ``turns`` is given."""
        if (self.text is None) == (self.turns is None):
            raise InputError("give exactly one of 'text' (the complaint) or 'turns' (the "
                             "conversation)")
        record: dict[str, Any] = (
            {"text": self.text} if self.text is not None
            else {"turns": [turn.model_dump() for turn in self.turns or []]})
        if self.language:
            record["language"] = self.language
        if self.channel:
            record["channel"] = str(self.channel)
        return record


def error_text(error: ComplaintMotiveError) -> str:
    """What a calling model reads when a tool fails: the error's kind, then its message
    (which never quotes the complaint)."""
    return f"{error.kind}: {error.message}"


def summary(result: MotiveAnalysis) -> dict[str, Any]:
    """The result's stable keys plus what an agent acts on, for a model to read: the whole
    result is long, and mostly for the application."""
    return {
        "primary_motive": result.primary_motive.model_dump(
            mode="json", include={"id", "confidence", "level", "action"}),
        "secondary_motives": [m.id for m in result.secondary_motives],
        "stage": result.stage.model_dump(mode="json", include={"id", "confidence"})
        if result.stage else None,
        "risk": result.risk.model_dump(mode="json", include={"level", "flags"}),
        "handling": {"steps": result.handling.steps, "avoid": result.handling.avoid},
        "reply": {"text": result.reply.text, "language": result.reply.language,
                  "draft": True},
        "citations": [c.chunk_id for c in result.citations],
        "meta": result.meta.model_dump(mode="json",
                                       include={"backend", "degraded", "warnings"}),
    }


def analyzer_tool(analyzer: MotiveAnalyzer, *, name: str = TOOL_NAME,
                  description: str = TOOL_DESCRIPTION) -> StructuredTool:
    """``analyzer`` as a LangChain ``StructuredTool`` (``response_format`` content and
    artifact): the model reads the summary as JSON, the ``ToolMessage.artifact`` is the
    ``MotiveAnalysis``. A typed error becomes the tool's error message (``kind: message``,
    ``ToolMessage.status == "error"``), so the agent loop goes on."""

    def run(**arguments: Any) -> tuple[str, MotiveAnalysis]:
        try:
            result = analyzer.analyze(ComplaintArgs(**arguments).record())
        except ComplaintMotiveError as error:
            raise ToolException(error_text(error)) from None
        return json.dumps(summary(result), ensure_ascii=False), result

    async def arun(**arguments: Any) -> tuple[str, MotiveAnalysis]:
        try:
            result = await analyzer.aanalyze(ComplaintArgs(**arguments).record())
        except ComplaintMotiveError as error:
            raise ToolException(error_text(error)) from None
        return json.dumps(summary(result), ensure_ascii=False), result

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=name, description=description,
        args_schema=ComplaintArgs, response_format="content_and_artifact",
        handle_tool_error=True, handle_validation_error=_invalid_arguments)


def _invalid_arguments(error: Exception) -> str:
    """Arguments that do not fit the schema, as an input error naming the field (pydantic's
    own message would quote the value, which may be the complaint)."""
    from pydantic import ValidationError

    from ..readers import validation_summary

    if not isinstance(error, ValidationError):
        return "input: the arguments do not fit the tool's schema"
    return error_text(InputError(validation_summary(error)))
