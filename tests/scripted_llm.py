"""A scripted OpenAI-compatible chat endpoint for tests and benchmarks.

It plays the model: it reads the request as a real model would (the guidance handles it
was given, the fenced, numbered complaint), and answers in the shape the request asked for — JSON
content for json_schema / json_object, a tool call for function calling. Steps script
failures: HTTP errors, timeouts, broken JSON, invented labels or citations, refusals.
The real ``openai`` client talks to it through an ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Step = Callable[[dict[str, Any], "Seen"], httpx.Response | dict[str, Any] | str | Exception]


@dataclass
class Seen:
    """What the model was shown in one request."""

    body: dict[str, Any]

    @property
    def text(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.body["messages"])

    @property
    def complaint(self) -> str:
        found = re.search(r"<complaint-(\w+)>\n(.*?)\n</complaint-\1>", self.text, re.S)
        return found.group(2) if found else ""

    @property
    def boundary(self) -> str:
        """The fence boundary the request's system message names."""
        found = re.search(r"CODE for this request: (\w+)", self.text)
        return found.group(1) if found else ""

    @property
    def handles(self) -> list[str]:
        """The guidance handles the request shows (g1, g2 …)."""
        return re.findall(r"^\[(g\d+)\] ", self.text, re.M)

    @property
    def guidance(self) -> list[str]:
        """The guidance texts the request shows, in handle order (clipped as shown)."""
        return re.findall(r"^\[g\d+\] (.*)$", self.text, re.M)

    @property
    def clauses(self) -> dict[int, str]:
        """The complaint's numbered clauses: number → words."""
        return {int(n): words for n, words in
                re.findall(r"^\((\d+)\) (.*)$", self.complaint, re.M)}

    @property
    def language(self) -> str:
        """The language the request asks the answer to be written in."""
        found = re.search(r"writing in (\w+)\.", self.text)
        return found.group(1) if found else ""

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.body.get("tools") or []

    @property
    def tool_results(self) -> list[str]:
        """The text of each tool message in the conversation (what tools returned), oldest
        first: an agent's model reads these before its next turn."""
        results = []
        for message in self.body["messages"]:
            if message.get("role") != "tool":
                continue
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(part.get("text", "") for part in content)
            results.append(str(content or ""))
        return results


def good_answer(seen: Seen, **overrides: Any) -> dict[str, Any]:
    """A correct answer for whatever complaint the request holds, written in the language
    the request asks for."""
    last = max(seen.clauses, default=1)
    chinese = seen.language == "Chinese"
    answer = {
        "primary_motive": "compensation", "primary_confidence": "high",
        "primary_evidence": [last], "primary_explanation": "asks for money back",
        "secondary_motives": ["venting"], "stage": "voiced_grievance",
        "stage_confidence": "medium", "stage_evidence": [last],
        "stage_explanation": "states dissatisfaction",
        "needs": [{"id": "compensation", "clause": last}],
        "leading_need": "rational", "legitimacy": "undetermined", "sources": [],
        "risk_flags": [],
        "specific_steps": ["核实扣款记录"] if chinese else ["Check the charge record"],
        "reply": ("您好,给您带来不便非常抱歉,我们会尽快核实并按政策给您答复。" if chinese
                  else "Sorry for the trouble; we will check and answer within policy."),
        "citations": seen.handles[:2],
    }
    answer.update(overrides)
    return answer


def completion(seen: Seen, content: dict[str, Any] | str, *, prompt_tokens: int = 900,
               completion_tokens: int = 300, finish_reason: str | None = None,
               ) -> httpx.Response:
    """A chat.completion in the shape the request asked for (``finish_reason="length"``:
    an answer cut off at the output bound)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if seen.tools:
        name = seen.tools[0]["function"]["name"]
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": text}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": text}
        finish = "stop"
    finish = finish_reason or finish
    return httpx.Response(200, json={
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1_700_000_000,
        "model": seen.body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}})


def streamed(seen: Seen, done: dict[str, Any], pieces: int = 2) -> httpx.Response:
    """A chat.completion as the server-sent events a streaming request gets: the content
    (or tool-call arguments) in ``pieces`` deltas, the finish reason, then the usage if
    asked."""
    choice = done["choices"][0]
    message, head = choice["message"], {k: done[k] for k in ("id", "created", "model")}
    calls = message.get("tool_calls")
    text = calls[0]["function"]["arguments"] if calls else message.get("content") or ""
    cuts = [len(text) * n // pieces for n in range(pieces + 1)]
    halves = [text[start:end] for start, end in zip(cuts, cuts[1:], strict=False)]
    deltas: list[dict[str, Any]] = []
    for n, part in enumerate(halves):
        if calls:
            call: dict[str, Any] = {"index": 0, "function": {"arguments": part}}
            if n == 0:
                call.update(id=calls[0]["id"], type="function")
                call["function"]["name"] = calls[0]["function"]["name"]
            deltas.append({"role": "assistant", "tool_calls": [call]} if n == 0
                          else {"tool_calls": [call]})
        else:
            deltas.append({"role": "assistant", "content": part} if n == 0
                          else {"content": part})
    chunks = [{**head, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**head, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    if (seen.body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**head, "object": "chat.completion.chunk", "choices": [],
                       "usage": done["usage"]})
    events = "".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks)
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=(events + "data: [DONE]\n\n").encode())


def error(status: int, message: str = "scripted failure", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"error": {"message": message, "type": "scripted"}})


#: What llama-cpp-python's server (0.3.36) answered to ``response_format: json_schema``, as
#: observed in tests/test_real_llm.py: a 500 whose message is the request model's
#: validation error (followed by a traceback line naming the server's install path).
LLAMACPP_JSON_SCHEMA_ERROR = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}")


def cut_off(seen: Seen) -> httpx.Response:
    """An answer that ran into the output bound: half a JSON object, finish_reason length."""
    text = json.dumps(good_answer(seen), ensure_ascii=False)
    return completion(seen, text[: len(text) // 2], completion_tokens=800,
                      finish_reason="length")


def llamacpp_like(body: dict[str, Any], seen: Seen) -> httpx.Response | dict[str, Any]:
    """What llama-cpp-python's server accepts: json_object (with or without a schema) and
    forced tool calls; json_schema is a 500 naming the field. It reads ``max_tokens`` and
    ignores ``max_completion_tokens``."""
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return httpx.Response(500, json={"error": {
            "message": LLAMACPP_JSON_SCHEMA_ERROR + '\n\n  File "/srv/llama_cpp/server/app.py", '
            'line 376, in create_chat_completion\n    POST /v1/chat/completions',
            "type": "internal_server_error",
            "param": None, "code": None}})
    return good_answer(seen)


@dataclass
class ScriptedEndpoint:
    """Answers each request with the next step of the script, then with ``default``."""

    steps: list[Step] = field(default_factory=list)
    default: Step | None = None
    latency: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    #: How many deltas a streamed answer comes in.
    stream_pieces: int = 2

    def _respond(self, request: httpx.Request) -> httpx.Response:
        seen = Seen(json.loads(request.content))
        self.requests.append(seen)
        step = self.steps.pop(0) if self.steps else self.default
        produced = step(seen.body, seen) if step is not None else good_answer(seen)
        if isinstance(produced, Exception):
            if isinstance(produced, httpx.TimeoutException):
                raise type(produced)(str(produced), request=request)
            raise produced
        response = produced if isinstance(produced, httpx.Response) else completion(
            seen, produced)
        if seen.body.get("stream") and response.status_code == 200:
            return streamed(seen, response.json(), self.stream_pieces)
        return response

    def handler(self, request: httpx.Request) -> httpx.Response:
        return self._respond(request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        return self._respond(request)

    def clients(self) -> dict[str, Any]:
        """Keyword arguments for ``MotiveAnalyzer.from_settings`` / ``LLMBackend``."""
        return {"http_client": httpx.Client(transport=httpx.MockTransport(self.handler)),
                "http_async_client": httpx.AsyncClient(
                    transport=httpx.MockTransport(self.async_handler))}


def assistant_turn(seen: Seen, *, content: str | None = None,
                   tool_calls: list[dict[str, Any]] | None = None) -> httpx.Response:
    """A chat.completion carrying exactly this assistant message: an agent's turn, where
    tools are offered but the model decides whether to call one."""
    calls = [{"id": f"call_{n}", "type": "function",
              "function": {"name": call["name"],
                           "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
             for n, call in enumerate(tool_calls or [], start=1)]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return httpx.Response(200, json={
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1_700_000_000,
        "model": seen.body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}})


def calls_tool(name: str, arguments: dict[str, Any]) -> Step:
    """A step in which the model calls the tool ``name`` with ``arguments``."""
    return lambda body, seen: assistant_turn(
        seen, tool_calls=[{"name": name, "arguments": arguments}])


def says(text: Callable[[Seen], str]) -> Step:
    """A step in which the model answers in words, written from what it was shown (e.g. the
    tool results so far)."""
    return lambda body, seen: assistant_turn(seen, content=text(seen))


def answer(**overrides: Any) -> Step:
    """A step answering correctly, with some fields replaced."""
    return lambda body, seen: good_answer(seen, **overrides)
