"""The MCP server for helpdesk copilots and agents: ``complaint-motive mcp`` (the official
``mcp`` SDK's FastMCP; stdio by default, streamable HTTP with an optional bearer token).

- tools: ``analyze_complaint`` (text or turns → the ``MotiveAnalysis``, declared as the
  tool's output schema), ``search_guidance`` (what the guidance says about a motive or a
  text, with citations) and ``record_correction``;
- resources: the taxonomy (``complaint-motive://taxonomy``) and each guidance document
  (``complaint-motive://guidance/<id>``);
- a prompt, ``draft_reply``: the analysis, the steps, the do-not-say list and the guidance
  around a complaint, for the host's model to draft a reply from.

A failed tool call is an MCP tool error (``isError``) whose text is the library error's
``kind: message``; anything unexpected is logged and reported as ``internal`` without its
message, so no stack trace and no complaint text reaches the client.

>>> server = create_server(MotiveAnalyzer.from_settings())   # doctest: +SKIP
>>> server.run()                                               # stdio  # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import logging
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.fastmcp.prompts.base import UserMessage
from mcp.server.fastmcp.resources import TextResource
from mcp.types import ContentBlock, ToolAnnotations
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from .. import __version__
from ..analysis.schema import MotiveAnalysis
from ..analysis.tool import TOOL_DESCRIPTION, ComplaintArgs, ConversationTurn, error_text
from ..errors import ComplaintMotiveError, InputError
from ..knowledge.taxonomy import ChannelId, MotiveId, PrimaryMotiveId, StageId

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from ..analyzer import MotiveAnalyzer

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]
URI_PREFIX = "complaint-motive://"
INSTRUCTIONS = (
    "Analyse customer complaints for a helpdesk: call analyze_complaint with the customer's "
    "text (or the conversation's turns) to learn their motive, stage and risk, what to do and "
    "never say, and a reply draft; search_guidance for what the complaint-handling guidance "
    "says about a motive or a situation; record_correction when an agent says the analysis "
    "was wrong. Replies are drafts for a human agent, never to be sent unread.")

_ARGS = ComplaintArgs.model_fields


class GuidanceCitation(BaseModel):
    """One passage of the guidance, with where it comes from."""

    chunk_id: str = Field(description="cite it as [chunk_id]")
    title: str
    section: str
    source: str = Field(description="the seed file the guidance comes from")
    resource: str = Field(description="the guidance document's MCP resource URI")
    score: float
    motives: list[str]
    stages: list[str]
    text: str


class GuidanceSearch(BaseModel):
    """What the guidance says, best first."""

    query: str
    motive: str | None
    citations: list[GuidanceCitation]


class CorrectionRecorded(BaseModel):
    """A correction appended to the corrections file, for a reviewer to import."""

    predicted_motive: str
    predicted_stage: str | None
    motive: str
    stage: str | None
    reviewed: bool = False


class _Server(FastMCP):
    """FastMCP whose tool errors carry the library error's kind and message."""

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        ) -> Sequence[ContentBlock] | dict[str, Any]:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as error:
            raise _tool_error(name, error) from None


def _tool_error(name: str, error: ToolError) -> ToolError:
    cause = error.__cause__
    if isinstance(cause, ComplaintMotiveError):
        return ToolError(error_text(cause))
    if isinstance(cause, PydanticValidationError):  # arguments outside the tool's schema
        from ..readers import validation_summary

        # pydantic's full message quotes the value, which may be the complaint.
        return ToolError(error_text(InputError(validation_summary(cause))))
    if cause is None:  # the SDK's own (an unknown tool): no complaint in it
        return error
    frame = traceback.extract_tb(cause.__traceback__)[-1] if cause.__traceback__ else None
    log.error("unexpected %s in tool %s at %s:%s", type(cause).__name__, name,
              *(frame.filename, frame.lineno) if frame else ("?", "?"))
    return ToolError("internal: unexpected internal error; see the server log")


def create_server(analyzer: MotiveAnalyzer, *, host: str = "127.0.0.1",
                  port: int = 8000) -> FastMCP:
    """The MCP server around ``analyzer`` (``host`` / ``port`` for streamable HTTP)."""
    from ..knowledge.corpus import guidance_paths, load_guidance
    from ..resources import corpus_dir

    server = _Server("complaint-motive", instructions=INSTRUCTIONS, host=host, port=port,
                     log_level="WARNING")
    read_only = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    @server.tool(title="Analyse a complaint", description=TOOL_DESCRIPTION,
                 annotations=read_only, structured_output=True)
    async def analyze_complaint(
        text: Annotated[str | None, Field(description=_ARGS["text"].description)] = None,
        turns: Annotated[list[ConversationTurn] | None,
                         Field(description=_ARGS["turns"].description)] = None,
        language: Annotated[Literal["zh", "en"] | None,
                            Field(description=_ARGS["language"].description)] = None,
        channel: Annotated[ChannelId | None,
                           Field(description=_ARGS["channel"].description)] = None,
    ) -> MotiveAnalysis:
        record = ComplaintArgs(text=text, turns=turns, language=language,
                               channel=channel).record()
        return await analyzer.aanalyze(record)

    @server.tool(title="Search the guidance", annotations=read_only, structured_output=True)
    def search_guidance(
        query: Annotated[str | None, Field(
            description="a complaint or a situation, in the customer's words or an "
            "agent's")] = None,
        motive: Annotated[MotiveId | None, Field(
            description="what the guidance says about this motive")] = None,
        k: Annotated[int, Field(ge=1, le=20, description="how many passages")] = 4,
    ) -> GuidanceSearch:
        """What the complaint-handling guidance says about a motive or a text, best first,
        each passage with the id to cite it by and the document it comes from."""
        return _search(analyzer, query, None if motive is None else str(motive), k)

    @server.tool(title="Record a correction", structured_output=True,
                 annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                             idempotentHint=False, openWorldHint=False))
    async def record_correction(
        text: Annotated[str, Field(description="the complaint the analysis misjudged")],
        motive: Annotated[PrimaryMotiveId | None, Field(description="the right motive")] = None,
        stage: Annotated[StageId | None, Field(description="the right stage")] = None,
        note: Annotated[str | None, Field(max_length=500, description="why")] = None,
    ) -> CorrectionRecorded:
        """Record an agent's correction of the analysis of a complaint (the right motive, the
        right stage, or both), stored with personal data masked, for a reviewer to turn into
        a labelled example."""
        result = await analyzer.aanalyze(text)
        analyzer.record_correction(result, text=text, motive=str(motive) if motive else None,
                                   stage=str(stage) if stage else None, note=note)
        right_motive = str(motive) if motive else result.primary_motive.id
        return CorrectionRecorded(
            predicted_motive=result.primary_motive.id,
            predicted_stage=result.stage.id if result.stage else None, motive=right_motive,
            stage=None if right_motive == "not_a_complaint"
            else str(stage) if stage else result.stage.id if result.stage else None)

    # Read once, as UTF-8 whatever the locale; the files are small and never change while
    # the server runs.
    server.add_resource(TextResource(
        uri=f"{URI_PREFIX}taxonomy", name="taxonomy", title="The labels",
        description="Motives, stages, needs, risk flags, handling steps and the do-not-say "
        "list, with where in the guidance each comes from", mime_type="application/yaml",
        text=(corpus_dir() / "taxonomy.yaml").read_text(encoding="utf-8")))
    for document, path in zip(load_guidance(), guidance_paths(), strict=True):
        server.add_resource(TextResource(
            uri=f"{URI_PREFIX}guidance/{document.id}", name=document.id, title=document.title,
            description=f"Complaint-handling guidance: {document.title}",
            mime_type="text/markdown", text=path.read_text(encoding="utf-8")))

    @server.prompt(title="Draft a reply to this complaint")
    async def draft_reply(complaint: str) -> list[UserMessage]:
        """Draft a reply to this complaint: the analysis, the steps, what never to say and
        the guidance, for the model to write a reply an agent can send after review."""
        try:
            result = await analyzer.aanalyze(complaint)
        except ComplaintMotiveError as error:
            raise ValueError(error_text(error)) from None
        return [UserMessage(_reply_prompt(analyzer, complaint, result))]

    return server


def _search(analyzer: MotiveAnalyzer, query: str | None, motive: str | None,
            k: int) -> GuidanceSearch:
    from ..knowledge.taxonomy import load_taxonomy
    from .retriever import retrieve_guidance

    if not (query and query.strip()) and motive is None:
        raise InputError("give a query (a complaint or a situation), a motive, or both")
    if not (query and query.strip()):
        about = load_taxonomy().motive(str(motive))
        query = f"{about.zh} {about.definition}"
    chunks = retrieve_guidance(analyzer.pipeline, query, k,
                               motives=[motive] if motive else ())
    return GuidanceSearch(query=query, motive=motive, citations=[GuidanceCitation(
        chunk_id=c.chunk_id, title=c.title, section=c.section, source=c.source,
        resource=f"{URI_PREFIX}guidance/{c.chunk_id.split('#')[0]}", score=round(c.score, 4),
        motives=list(c.motives), stages=list(c.stages), text=c.text) for c in chunks])


def _reply_prompt(analyzer: MotiveAnalyzer, complaint: str, result: MotiveAnalysis) -> str:
    from langchain_core.prompts import PromptTemplate

    from ..analysis.injection import neutralise  # the analysis prompt's fence rule: one place
    from ..analysis.privacy import redact
    from ..resources import prompts_dir

    if analyzer.settings.redact_pii:  # the host's model is outside this process
        complaint = redact(complaint).text

    motive = result.primary_motive
    secondary = ", ".join(m.id for m in result.secondary_motives)
    guidance = _search(analyzer, complaint, motive.id if motive.id in _motive_ids() else None,
                       3).citations
    template = (prompts_dir() / "copilot_draft_reply.md").read_text(encoding="utf-8")
    return PromptTemplate.from_template(template).format(
        language="Chinese" if result.reply.language == "zh" else "English",
        complaint=neutralise(complaint.strip()),
        motive=motive.id, level=motive.level,
        secondary=f"; also {secondary}" if secondary else "",
        stage=result.stage.id if result.stage else "not a complaint",
        risk=f"{result.risk.level}" + (f" ({', '.join(result.risk.flags)})"
                                       if result.risk.flags else ""),
        steps="\n".join(f"{n}. {step}" for n, step in enumerate(result.handling.steps, 1)),
        avoid="\n".join(f"- {item}" for item in result.handling.avoid),
        guidance="\n".join(f"[{c.chunk_id}] {c.text}" for c in guidance),
        draft=result.reply.text)


def _motive_ids() -> set[str]:
    from ..knowledge.taxonomy import load_taxonomy

    return {m.id for m in load_taxonomy().motives}


class BearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``
    (compared in constant time); others get a 401 before the MCP layer sees them."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": "invalid_token",
                     "error_description": "send Authorization: Bearer <token>"},
                    status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_app(server: FastMCP, *, token: str | None = None) -> ASGIApp:
    """The streamable HTTP app (``/mcp``), behind a bearer token when one is given."""
    app = server.streamable_http_app()
    return BearerToken(app, token) if token else app


def serve(analyzer: MotiveAnalyzer, *, transport: Transport = "stdio",
          host: str = "127.0.0.1", port: int = 8000, token: str | None = None) -> None:
    """Run the server until the client (stdio) or the process (HTTP) ends it."""
    server = create_server(analyzer, host=host, port=port)
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    log.info("MCP over streamable HTTP", extra={
        "event": "mcp_http", "host": host, "port": port, "token": token is not None,
        "version": __version__})
    uvicorn.run(http_app(server, token=token), host=host, port=port, log_level="warning")
