"""A scripted OpenAI-compatible chat endpoint for tests and benchmarks.

It plays the model: it reads the request as a real model would (the guidance ids it was
given, the fenced complaint), and answers in the shape the request asked for — JSON
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
        found = re.search(r"<complaint>\n(.*?)\n</complaint>", self.text, re.S)
        return found.group(1) if found else ""

    @property
    def chunk_ids(self) -> list[str]:
        return re.findall(r"^\[([a-z0-9-]+#[a-z0-9-]+(?:/\d+)?)\]", self.text, re.M)

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


def good_answer(seen: Seen, **overrides: Any) -> dict[str, Any]:
    """A correct answer for whatever complaint the request holds, written in the language
    the request asks for."""
    complaint = seen.complaint
    quote = complaint[: min(8, len(complaint))]
    chinese = seen.language == "Chinese"
    answer = {
        "primary_motive": "compensation", "primary_confidence": 0.82,
        "primary_evidence": [quote], "primary_explanation": "asks for money back",
        "secondary_motives": ["venting"], "stage": "voiced_grievance",
        "stage_confidence": 0.7, "stage_evidence": [quote],
        "stage_explanation": "states dissatisfaction", "needs": ["compensation"],
        "leading_need": "rational", "legitimacy": "undetermined", "sources": ["quality"],
        "risk_flags": [],
        "specific_steps": ["核实扣款记录"] if chinese else ["Check the charge record"],
        "reply": ("您好,给您带来不便非常抱歉,我们会尽快核实并按政策给您答复。" if chinese
                  else "Sorry for the trouble; we will check and answer within policy."),
        "citations": seen.chunk_ids[:2],
    }
    answer.update(overrides)
    return answer


def completion(seen: Seen, content: dict[str, Any] | str, *, prompt_tokens: int = 900,
               completion_tokens: int = 300) -> httpx.Response:
    """A chat.completion in the shape the request asked for."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if seen.tools:
        name = seen.tools[0]["function"]["name"]
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": text}}]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": text}
        finish = "stop"
    return httpx.Response(200, json={
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 1_700_000_000,
        "model": seen.body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}})


def error(status: int, message: str = "scripted failure", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers,
                          json={"error": {"message": message, "type": "scripted"}})


@dataclass
class ScriptedEndpoint:
    """Answers each request with the next step of the script, then with ``default``."""

    steps: list[Step] = field(default_factory=list)
    default: Step | None = None
    latency: float = 0.0
    requests: list[Seen] = field(default_factory=list)

    def _respond(self, request: httpx.Request) -> httpx.Response:
        seen = Seen(json.loads(request.content))
        self.requests.append(seen)
        step = self.steps.pop(0) if self.steps else self.default
        produced = step(seen.body, seen) if step is not None else good_answer(seen)
        if isinstance(produced, Exception):
            if isinstance(produced, httpx.TimeoutException):
                raise type(produced)(str(produced), request=request)
            raise produced
        if isinstance(produced, httpx.Response):
            return produced
        return completion(seen, produced)

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


def answer(**overrides: Any) -> Step:
    """A step answering correctly, with some fields replaced."""
    return lambda body, seen: good_answer(seen, **overrides)
