"""`analyzer.as_tool()`: a LangChain StructuredTool that a tool-calling ChatOpenAI fills,
driven through real agent turns against the scripted endpoint."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool
from langchain_openai import ChatOpenAI

from complaint_motive import MotiveAnalysis, MotiveAnalyzer
from complaint_motive.knowledge.taxonomy import load_taxonomy
from scripted_llm import ScriptedEndpoint, Seen, calls_tool, says

COMPLAINT = "信用卡年费被扣了两次,客服电话打了三次都没人管,我要求退还多扣的年费!"


def _turns(tool: StructuredTool, endpoint: ScriptedEndpoint) -> list[BaseMessage]:
    """A tool-calling agent turn: the model asks for the tool, the tool runs, the model
    answers from what it returned."""
    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test",  # type: ignore[arg-type]
                       max_retries=0, **endpoint.clients()).bind_tools([tool])
    messages: list[BaseMessage] = [HumanMessage(f"Help me answer this: {COMPLAINT}")]
    reply = model.invoke(messages)
    messages.append(reply)
    assert isinstance(reply, AIMessage)
    for call in reply.tool_calls:
        messages.append(tool.invoke({**call, "type": "tool_call"}))
    messages.append(model.invoke(messages))
    return messages


def _read_back(seen: Seen) -> str:
    returned = seen.tool_results[-1]
    if returned.startswith("input:"):
        return f"The tool refused: {returned}"
    summary = json.loads(returned)
    return f"motive {summary['primary_motive']['id']}, reply: {summary['reply']['text']}"


def test_a_tool_calling_model_fills_the_schema_and_reads_the_result(
        offline: MotiveAnalyzer) -> None:
    tool = offline.as_tool()
    endpoint = ScriptedEndpoint(steps=[
        calls_tool("analyze_complaint", {"text": COMPLAINT, "language": "en",
                                         "channel": "message_to_company"}),
        says(_read_back)])
    messages = _turns(tool, endpoint)

    # What the model was offered: a flat, described schema with the taxonomy's channels.
    offered = endpoint.requests[0].tools
    assert [t["function"]["name"] for t in offered] == ["analyze_complaint"]
    parameters: dict[str, Any] = offered[0]["function"]["parameters"]
    assert set(parameters["properties"]) == {"text", "turns", "language", "channel"}
    assert all(field.get("description") for field in parameters["properties"].values())
    assert not parameters.get("required")  # text or turns: the tool says which is missing
    assert "motive" in offered[0]["function"]["description"]
    schema_text = json.dumps(parameters)
    assert all(channel.id in schema_text for channel in load_taxonomy().channels)

    # The tool ran the analyzer: the model reads the summary, the app gets the result.
    tool_message = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool_message.status == "success"
    result = tool_message.artifact
    assert isinstance(result, MotiveAnalysis)
    assert result == offline.analyze({"text": COMPLAINT, "language": "en",
                                      "channel": "message_to_company"}).model_copy(
        update={"meta": result.meta})
    summary = json.loads(str(tool_message.content))
    assert summary["primary_motive"]["id"] == result.primary_motive.id
    assert summary["reply"]["language"] == "en"
    assert summary["citations"] == [c.chunk_id for c in result.citations]
    assert messages[-1].content == (f"motive {result.primary_motive.id}, reply: "
                                    f"{result.reply.text}")
    # The second request carried the tool's answer back to the model.
    assert endpoint.requests[1].tool_results == [tool_message.content]


@pytest.mark.parametrize(("arguments", "refusal"), [
    ({"text": "  "}, "input: the complaint is empty: pass the customer's text"),
    ({}, "input: give exactly one of 'text' (the complaint) or 'turns' (the conversation)"),
    ({"text": 42}, "input: text: Input should be a valid string"),
    ({"text": "退款", "language": "fr"}, "input: language: Input should be 'zh' or 'en'"),
])
def test_bad_arguments_come_back_to_the_model_as_input_errors(
        offline: MotiveAnalyzer, arguments: dict[str, Any], refusal: str) -> None:
    endpoint = ScriptedEndpoint(steps=[calls_tool("analyze_complaint", arguments),
                                       says(_read_back)])
    messages = _turns(offline.as_tool(), endpoint)
    tool_message = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool_message.status == "error"
    assert tool_message.content == refusal
    assert messages[-1].content == f"The tool refused: {refusal}"


def test_the_tool_runs_in_an_event_loop_too(offline: MotiveAnalyzer) -> None:
    tool = offline.as_tool(name="explain_complaint", description="Explain a complaint.")
    assert (tool.name, tool.description) == ("explain_complaint", "Explain a complaint.")
    message = asyncio.run(tool.ainvoke({"type": "tool_call", "id": "call-1", "name": tool.name,
                                  "args": {"turns": [
                                      {"role": "customer", "text": "冰箱不制冷了"},
                                      {"role": "agent", "text": "请提供订单号"},
                                      {"role": "customer", "text": "给过三遍了!我要投诉"}]}}))
    assert isinstance(message.artifact, MotiveAnalysis)
    assert message.artifact.primary_motive.evidence[0].turn in (1, 3)
