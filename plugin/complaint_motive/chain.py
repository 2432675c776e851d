"""The LLM backend: one structured-output call per complaint through ``ChatOpenAI``.

LangChain does not re-ask when an answer fails validation, so the bounded re-ask is here:
the problems go back to the model once, then a typed error. Token usage is summed over
every attempt and reported even when the call finally fails. Retries, the rate-limit
backoff shared by concurrent calls, the total deadline and the circuit breaker are in
``limits``; reasoning models' quirks in ``reasoning``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from .errors import (
    BackendError,
    ComplaintMotiveError,
    ConfigurationError,
    OutputValidationError,
)
from .limits import CallLimits, CircuitBreaker, bound_requests, check_answer
from .prompts import reask_text
from .reasoning import accepts_temperature, after_thinking, parse_past_thinking
from .schema import ModelAnswer, Usage, model_facing_schema
from .settings import Settings
from .validation import Checked, drop_unknown_labels

log = logging.getLogger(__name__)

Validator = Callable[[ModelAnswer], Checked]


@dataclass
class LLMReply:
    """A valid answer, as repaired (``checked``), with the usage of every attempt."""

    checked: Checked
    usage: Usage
    attempts: int

    @property
    def answer(self) -> ModelAnswer:
        return self.checked.answer


def _usage(message: Any) -> Usage:
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(input_tokens=meta.get("input_tokens", 0),
                 output_tokens=meta.get("output_tokens", 0),
                 total_tokens=meta.get("total_tokens", 0))


def _backend_error(error: Exception) -> BackendError | ConfigurationError:
    import openai

    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return ConfigurationError(f"the LLM endpoint refused the credentials "
                                  f"({error.status_code}): check OPENAI_API_KEY")
    if isinstance(error, openai.NotFoundError):
        return ConfigurationError("the LLM endpoint does not know this model or path (404): "
                                  "check the model name and OPENAI_BASE_URL")
    if isinstance(error, openai.APITimeoutError):
        return BackendError("the LLM endpoint timed out after the configured retries; "
                            "raise timeout or try later")
    if isinstance(error, openai.RateLimitError):
        return BackendError("the LLM endpoint is rate limiting (429) after the configured "
                            "retries; lower concurrency or try later")
    if isinstance(error, openai.BadRequestError):
        said = str(getattr(error, "message", ""))[:200]
        return ConfigurationError(
            f"the LLM endpoint rejected the request (400): {said}. If it objects to "
            "response_format or tools, set structured_output (json_schema, "
            "function_calling or json_mode) or a provider recipe (provider=…)")
    if isinstance(error, openai.APIStatusError):
        return BackendError(f"the LLM endpoint answered {error.status_code} after the "
                            "configured retries")
    if isinstance(error, openai.APIConnectionError):
        return BackendError("cannot reach the LLM endpoint; check OPENAI_BASE_URL and the "
                            "network")
    return BackendError(f"the LLM call failed: {type(error).__name__}")


def _shown_back(raw: Any) -> list[BaseMessage]:
    """The model's rejected answer as it goes back in the re-ask: the assistant's turn it
    wrote (a tool call stays a tool call) and the turn that carries the problems is added
    by the caller. Nothing when there is no answer to show (empty, a refusal)."""
    tool_calls = getattr(raw, "tool_calls", None) or []
    if tool_calls:
        return [AIMessage(content="", tool_calls=tool_calls[:1])]
    broken = getattr(raw, "invalid_tool_calls", None) or []
    content = broken[0].get("args") if broken else getattr(raw, "content", None)
    if not isinstance(content, str):
        return []
    content = after_thinking(content)  # the answer goes back, not the model's reasoning
    return [AIMessage(content=content)] if content.strip() else []


class _Exchange:
    """The re-ask loop, free of I/O so the sync and async drivers share it: which request
    to send next, what each answer was worth, and the token usage summed over attempts.

    Validation repairs what it can; what is left goes back the way instructor does it: the
    model's own answer as the assistant's turn, then the problems, so the model can see
    what it is asked to fix."""

    def __init__(self, messages: list[BaseMessage], validate: Validator, *,
                 attempts_allowed: int) -> None:
        self.messages, self.validate = messages, validate
        self.attempts_allowed = attempts_allowed
        self.attempts = 0
        self.usage = Usage()
        self.problems: list[str] = []
        self.rejected: list[BaseMessage] = []

    def next_request(self) -> list[BaseMessage] | None:
        if self.attempts >= self.attempts_allowed:
            return None
        self.attempts += 1
        if not self.problems:
            return self.messages
        problems = reask_text(self.problems)
        shown = self.rejected
        if shown and isinstance(shown[-1], AIMessage) and shown[-1].tool_calls:
            # A tool call must be answered by its tool result: the problems go there.
            call_id = shown[-1].tool_calls[0].get("id") or "call"
            return [*self.messages, *shown, ToolMessage(problems, tool_call_id=call_id)]
        return [*self.messages, *shown, HumanMessage(problems)]

    def receive(self, out: dict[str, Any]) -> LLMReply | None:
        """The reply when the answer is valid (after repair); otherwise remember why, and
        the answer itself, for the re-ask."""
        raw = out.get("raw")
        self.usage = self.usage + _usage(raw)
        self.rejected = _shown_back(raw)
        parsed = out.get("parsed")
        if isinstance(parsed, dict):
            cleaned, repairs = drop_unknown_labels(parsed)
            try:
                answer = ModelAnswer.model_validate(cleaned)
            except ValidationError as error:
                self.problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in error.errors()[:8]]
            else:
                checked = self.validate(answer)
                checked.repairs[:0] = repairs
                self.problems = checked.problems
                if not self.problems:
                    return LLMReply(checked, self.usage, self.attempts)
        else:
            refusal = getattr(raw, "additional_kwargs", {}).get("refusal")
            self.problems = [f"the model refused: {refusal}" if refusal else
                             "the answer was empty or not valid JSON; reply with one JSON "
                             "object"]
        log.info("answer rejected (attempt %d): %d problems", self.attempts,
                 len(self.problems))
        return None

    def invalid(self) -> OutputValidationError:
        return OutputValidationError(
            f"the model's answer stayed invalid after {self.attempts} attempts: "
            f"{self.problems[0]}", problems=self.problems, attempts=self.attempts,
            usage=self.usage.model_dump())


class LLMBackend:
    """``ChatOpenAI`` with structured output, validation, one re-ask and a circuit breaker.

    ``http_client`` / ``http_async_client`` let tests and proxies supply the ``httpx``
    clients the ``openai`` package uses.
    """

    def __init__(self, settings: Settings, *, http_client: httpx.Client | None = None,
                 http_async_client: httpx.AsyncClient | None = None) -> None:
        import openai
        from langchain_openai import ChatOpenAI

        self.settings = settings
        self.model_name = settings.model
        self.method = settings.structured_output
        temperature: float | None = settings.temperature
        if not accepts_temperature(settings.model, settings.reasoning_effort):
            temperature = None  # o-series and gpt-5 reject it (400 unsupported_value)
        self.llm = ChatOpenAI(
            model=settings.model, temperature=temperature,
            reasoning_effort=settings.reasoning_effort, extra_body=settings.extra_body or None,
            api_key=settings.openai_api_key or "not-needed",  # local servers take any key
            base_url=settings.openai_base_url, timeout=settings.timeout,
            max_retries=0,  # retries are ours (limits.CallLimits), shared across calls
            # Our own clients (they carry the deadline), so langchain's OPENAI_PROXY
            # handling moves here: it refuses a proxy beside given clients.
            openai_proxy=None,
            http_client=bound_requests(
                http_client or openai.DefaultHttpxClient(proxy=os.environ.get("OPENAI_PROXY")),
                settings.deadline),
            http_async_client=bound_requests(
                http_async_client or openai.DefaultAsyncHttpxClient(
                    proxy=os.environ.get("OPENAI_PROXY")), settings.deadline))
        # A dict schema, not the class: with the class, the openai client parses the answer
        # itself and a malformed answer raises before we see its text or its token usage.
        self.structured = self.llm.with_structured_output(
            model_facing_schema(), method=self.method, include_raw=True,
            strict=None if self.method == "json_mode" else True)
        self.limits = CallLimits(
            max_retries=settings.max_retries, rate_limit_wait=settings.rate_limit_wait,
            breaker_failures=settings.breaker_failures,
            breaker_cooldown=settings.breaker_cooldown, describe=_backend_error)
        self.breaker: CircuitBreaker = self.limits.breaker

    @property
    def schema_in_prompt(self) -> bool:
        return self.method == "json_mode"

    def answer(self, messages: list[BaseMessage], validate: Validator,
               config: RunnableConfig | None = None) -> LLMReply:
        exchange = _Exchange(messages, validate, attempts_allowed=self.settings.reask + 1)
        while (request := exchange.next_request()) is not None:
            def send(request: list[BaseMessage] = request) -> dict[str, Any]:
                return _settled(self.structured.invoke(request, config=config))

            try:
                out = self.limits.call(send)
            except ComplaintMotiveError as error:
                raise self._failed(exchange, error) from error
            if (reply := exchange.receive(out)) is not None:
                return reply
        raise exchange.invalid()

    async def aanswer(self, messages: list[BaseMessage], validate: Validator,
                      config: RunnableConfig | None = None) -> LLMReply:
        return await self.acontinue(self.exchange(messages, validate), config)

    def exchange(self, messages: list[BaseMessage], validate: Validator) -> _Exchange:
        """A new re-ask loop for ``messages`` (the Batch API feeds it its first answer)."""
        return _Exchange(messages, validate, attempts_allowed=self.settings.reask + 1)

    async def acontinue(self, exchange: _Exchange,
                        config: RunnableConfig | None = None) -> LLMReply:
        """Run ``exchange`` to a valid answer or a typed error, from wherever it stands."""
        while (request := exchange.next_request()) is not None:
            async def send(request: list[BaseMessage] = request) -> dict[str, Any]:
                return _settled(await self.structured.ainvoke(request, config=config))

            try:
                out = await self.limits.acall(send)
            except ComplaintMotiveError as error:
                raise self._failed(exchange, error) from error
            if (reply := exchange.receive(out)) is not None:
                return reply
        raise exchange.invalid()

    def _failed(self, exchange: _Exchange,
                failure: ComplaintMotiveError) -> ComplaintMotiveError:
        failure.details.update(usage=exchange.usage.model_dump(), attempts=exchange.attempts)
        return failure


def _settled(out: dict[str, Any]) -> dict[str, Any]:
    """A structured-output result with a filtered answer raised as such and a thinking
    model's ``<think>`` block kept out of the parsed answer."""
    check_answer(out)
    return parse_past_thinking(out)
