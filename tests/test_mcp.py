"""The MCP server end to end: `complaint-motive mcp` as a real process, driven by the `mcp`
SDK's own client over stdio and over streamable HTTP (with a bearer token), and loaded into
a LangChain agent loop through langchain-mcp-adapters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_openai import ChatOpenAI
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from complaint_motive import MotiveAnalysis, MotiveAnalyzer
from complaint_motive.settings import Settings
from loopback import free_port, wait_until_up
from scripted_llm import ScriptedEndpoint, calls_tool, says

CLI = str(Path(sys.executable).parent / "complaint-motive")
COMPLAINT = "网银转账失败但钱扣了,手续费也扣了,我要求全额退回!电话13812345678"
TOKEN = "test-token-5f1c"


def _env(index_dir: Path, corrections: Path) -> dict[str, str]:
    return {**os.environ, "COMPLAINT_MOTIVE_INDEX_DIR": str(index_dir),
            "COMPLAINT_MOTIVE_BACKEND": "offline",
            "COMPLAINT_MOTIVE_CORRECTIONS_FILE": str(corrections)}


def _text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.fixture(scope="module")
def http_server(index_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                ) -> Iterator[tuple[str, Path]]:
    """`complaint-motive mcp --transport http --token …` on a free loopback port."""
    corrections = tmp_path_factory.mktemp("mcp-http") / "corrections.jsonl"
    port = free_port()
    server = subprocess.Popen([CLI, "mcp", "--transport", "http", "--port", str(port),
                               "--token", TOKEN], env=_env(index_dir, corrections),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"

    def answers() -> bool:
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_until_up(answers, "complaint-motive mcp", process=server)
    yield url, corrections
    server.terminate()
    server.wait(timeout=20)


async def _exercise(session: ClientSession, corrections: Path, expected: MotiveAnalysis,
                    ) -> None:
    """Everything a copilot does with the server, in one session."""
    await session.initialize()
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {"analyze_complaint", "search_guidance", "record_correction"}
    declared = tools["analyze_complaint"].outputSchema
    assert declared is not None and declared["title"] == "MotiveAnalysis"
    assert {"primary_motive", "stage", "reply", "citations", "meta"} <= set(declared["required"])
    assert set(tools["analyze_complaint"].inputSchema["properties"]) == {
        "text", "turns", "language", "channel"}

    # analyze_complaint: the structured result is the library's result, field for field.
    analysed = await session.call_tool("analyze_complaint", {"text": COMPLAINT})
    assert not analysed.isError
    result = MotiveAnalysis.model_validate(analysed.structuredContent)
    assert result.primary_motive.id == expected.primary_motive.id
    assert [c.chunk_id for c in result.citations] == [c.chunk_id for c in expected.citations]
    assert json.loads(_text(analysed))["reply"]["text"] == expected.reply.text
    assert "13812345678" not in _text(analysed)  # masked before anything else

    conversation = await session.call_tool("analyze_complaint", {"turns": [
        {"role": "customer", "text": "冰箱不制冷了"}, {"role": "agent", "text": "请提供订单号"},
        {"role": "customer", "text": "给过三遍了!再不处理我就去12315投诉"}], "language": "en"})
    assert not conversation.isError
    answered = MotiveAnalysis.model_validate(conversation.structuredContent)
    assert answered.reply.language == "en"
    assert "regulator_threat" in answered.risk.flags

    # search_guidance: passages about the motive asked for, each citable and traceable.
    found = await session.call_tool("search_guidance", {"motive": "compensation", "k": 3})
    assert not found.isError
    citations = found.structuredContent["citations"]  # type: ignore[index]
    assert len(citations) == 3
    assert any("compensation" in c["motives"] for c in citations)
    documents = {str(r.uri) for r in (await session.list_resources()).resources}
    assert {c["resource"] for c in citations} <= documents

    # record_correction: appended, personal data masked.
    recorded = await session.call_tool("record_correction", {
        "text": COMPLAINT, "motive": "respect", "note": "wants an apology first"})
    assert not recorded.isError
    assert recorded.structuredContent == {
        "predicted_motive": expected.primary_motive.id,
        "predicted_stage": expected.stage.id if expected.stage else None,
        "motive": "respect", "stage": expected.stage.id if expected.stage else None,
        "reviewed": False}
    stored = [json.loads(line) for line in corrections.read_text().splitlines()]
    assert stored[-1]["motive"] == "respect" and "13812345678" not in stored[-1]["text"]

    # Bad input: a tool error with the library's kind and message, never a traceback.
    for arguments, message in [
            ({"text": "   "}, "input: the complaint is empty: pass the customer's text"),
            ({"text": "a", "turns": [{"role": "customer", "text": "b"}]},
             "input: give exactly one of 'text' (the complaint) or 'turns' (the "
             "conversation)"),
            ({"text": 12345}, "input: text: Input should be a valid string"),
            ({"text": "退款", "channel": "fax"}, "input: channel: Input should be ")]:
        failed = await session.call_tool("analyze_complaint", arguments)
        assert failed.isError and failed.structuredContent is None
        assert _text(failed).startswith(message), _text(failed)
        assert "Traceback" not in _text(failed) and "12345" not in _text(failed)
    neither = await session.call_tool("search_guidance", {})
    assert neither.isError and _text(neither).startswith("input: give a query")
    unlabelled = await session.call_tool("record_correction", {"text": "退款还没到"})
    assert unlabelled.isError
    assert _text(unlabelled) == ("input: a correction needs the right motive, the right "
                                 "stage, or both")

    # Resources: the taxonomy and the guidance documents.
    taxonomy = await session.read_resource("complaint-motive://taxonomy")  # type: ignore[arg-type]
    assert "compensation" in taxonomy.contents[0].text  # type: ignore[union-attr]
    guide = await session.read_resource(
        "complaint-motive://guidance/motives-and-purposes")  # type: ignore[arg-type]
    assert "客户投诉的动机和目的" in guide.contents[0].text  # type: ignore[union-attr]

    # The prompt: the analysis and the guidance around the complaint.
    prompts = (await session.list_prompts()).prompts
    assert [p.name for p in prompts] == ["draft_reply"]
    drafted = await session.get_prompt("draft_reply", {"complaint": COMPLAINT})
    body = drafted.messages[0].content.text  # type: ignore[union-attr]
    assert "<complaint>\n" in body and "全额退回" in body
    assert f"the customer's motive: {expected.primary_motive.id}" in body
    assert all(item in body for item in expected.handling.avoid)
    assert "13812345678" not in body  # the host's model is outside the process: masked


def test_stdio_end_to_end(index_dir: Path, tmp_path: Path, settings: Settings) -> None:
    corrections = tmp_path / "stdio-corrections.jsonl"
    expected = MotiveAnalyzer(settings).analyze(COMPLAINT)
    parameters = StdioServerParameters(command=CLI, args=["mcp"],
                                       env=_env(index_dir, corrections))

    async def scenario() -> None:
        with open(os.devnull, "w") as quiet:
            async with stdio_client(parameters, errlog=quiet) as (read, write), \
                    ClientSession(read, write) as session:
                await _exercise(session, corrections, expected)

    asyncio.run(scenario())


def test_http_with_a_bearer_token(http_server: tuple[str, Path], settings: Settings) -> None:
    url, corrections = http_server
    expected = MotiveAnalyzer(settings).analyze(COMPLAINT)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.post(url, headers=headers, json={})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")

    async def scenario(token: str) -> None:
        client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                   timeout=60)
        async with client, streamable_http_client(url, http_client=client) as (
                read, write, _), ClientSession(read, write) as session:
            await _exercise(session, corrections, expected)

    asyncio.run(scenario(TOKEN))
    with pytest.raises(Exception) as refused_session:  # the SDK's client gives up at once
        asyncio.run(asyncio.wait_for(scenario("wrong"), 30))
    assert "401" in repr(refused_session.value) or "Unauthorized" in repr(refused_session.value)


def _tool_result(seen: Any) -> str:
    """The scripted model's final answer, from the analysis the tool returned to it."""
    analysis = json.loads(seen.tool_results[-1])
    return (f"The customer wants {analysis['primary_motive']['id']}; "
            f"stage {analysis['stage']['id']}.")


def test_langchain_agent_loop_through_mcp(http_server: tuple[str, Path],
                                          settings: Settings) -> None:
    url, _ = http_server
    expected = MotiveAnalyzer(settings).analyze(COMPLAINT)
    endpoint = ScriptedEndpoint(steps=[
        calls_tool("analyze_complaint", {"text": COMPLAINT}),
        says(_tool_result)])
    model = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test",  # type: ignore[arg-type]
                       max_retries=0, **endpoint.clients())

    async def agent() -> list[BaseMessage]:
        client = MultiServerMCPClient({"complaint-motive": {
            "transport": "streamable_http", "url": url,
            "headers": {"Authorization": f"Bearer {TOKEN}"}}})
        tools = {tool.name: tool for tool in await client.get_tools()}
        bound = model.bind_tools(list(tools.values()))
        messages: list[BaseMessage] = [HumanMessage(f"What does this customer want? {COMPLAINT}")]
        for _ in range(4):  # the agent loop: model, tools, model … until it answers
            reply = await bound.ainvoke(messages)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                break
            for call in reply.tool_calls:
                messages.append(await tools[call["name"]].ainvoke(
                    {**call, "type": "tool_call"}))
        return messages

    messages = asyncio.run(agent())
    offered = {tool["function"]["name"] for tool in endpoint.requests[0].tools}
    assert offered == {"analyze_complaint", "search_guidance", "record_correction"}
    schema = next(t["function"]["parameters"] for t in endpoint.requests[0].tools
                  if t["function"]["name"] == "analyze_complaint")
    assert "text" in schema["properties"] and "turns" in schema["properties"]
    tool_message = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool_message.status == "success"
    assert messages[-1].content == (
        f"The customer wants {expected.primary_motive.id}; "
        f"stage {expected.stage.id if expected.stage else None}.")
    assert len(endpoint.requests) == 2
