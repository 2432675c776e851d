"""The LLM backend: one structured-output call per complaint through ``ChatOpenAI``.

LangChain does not re-ask when an answer fails validation, so the bounded re-ask is here:
the problems go back to the model once, then a typed error. Token usage is summed over
every attempt and reported even when the call finally fails. Transport retries (timeouts,
429 with Retry-After, 5xx) are the ``openai`` client's own, with backoff; a circuit breaker
stops a dead endpoint from costing every complaint its full timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from .errors import BackendError, BackendUnavailable, ConfigurationError, OutputValidationError
from .prompts import reask_text
from .schema import ModelAnswer, Usage, model_facing_schema
from .settings import Settings

log = logging.getLogger(__name__)

Validator = Callable[[ModelAnswer], list[str]]


@dataclass
class LLMReply:
    answer: ModelAnswer
    usage: Usage
    attempts: int


class CircuitBreaker:
    """Open after ``failures`` consecutive backend failures; let one call through after
    ``cooldown`` seconds (half-open) and close again on its success."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures, self.cooldown = failures, cooldown
        self._count, self._opened_at = 0, 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            if self._count >= self.failures:
                waited = time.monotonic() - self._opened_at
                if waited < self.cooldown:
                    raise BackendUnavailable(
                        f"the LLM endpoint failed {self._count} times in a row; not calling it "
                        f"for another {self.cooldown - waited:.0f} s (use fallback='offline' "
                        "to keep answering)")
                self._count = self.failures - 1  # half-open: one trial call

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._count = 0
            else:
                self._count += 1
                if self._count >= self.failures:
                    self._opened_at = time.monotonic()


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


class LLMBackend:
    """``ChatOpenAI`` with structured output, validation, one re-ask and a circuit breaker.

    ``http_client`` / ``http_async_client`` let tests and proxies supply the ``httpx``
    clients the ``openai`` package uses.
    """

    def __init__(self, settings: Settings, *, http_client: httpx.Client | None = None,
                 http_async_client: httpx.AsyncClient | None = None) -> None:
        from langchain_openai import ChatOpenAI

        self.settings = settings
        self.model_name = settings.model
        self.method = settings.structured_output
        self.llm = ChatOpenAI(
            model=settings.model, temperature=settings.temperature,
            api_key=settings.openai_api_key or "not-needed",  # local servers take any key
            base_url=settings.openai_base_url, timeout=settings.timeout,
            max_retries=settings.max_retries, http_client=http_client,
            http_async_client=http_async_client)
        # A dict schema, not the class: with the class, the openai client parses the answer
        # itself and a malformed answer raises before we see its text or its token usage.
        self.structured = self.llm.with_structured_output(
            model_facing_schema(), method=self.method, include_raw=True,
            strict=None if self.method == "json_mode" else True)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown)

    @property
    def schema_in_prompt(self) -> bool:
        return self.method == "json_mode"

    def answer(self, messages: list[BaseMessage], validate: Validator,
               config: RunnableConfig | None = None) -> LLMReply:
        usage, attempts = Usage(), 0
        problems: list[str] = []
        for attempts in range(1, self.settings.reask + 2):  # noqa: B007
            self.breaker.check()
            try:
                out = self.structured.invoke(self._turn(messages, problems), config=config)
            except Exception as error:
                self.breaker.record(ok=False)
                raise _backend_error(error) from error
            self.breaker.record(ok=True)
            reply = self._judge(out, validate, usage, attempts)
            if isinstance(reply, LLMReply):
                return reply
            usage, problems = reply
        raise self._invalid(problems, usage, attempts)

    async def aanswer(self, messages: list[BaseMessage], validate: Validator,
                      config: RunnableConfig | None = None) -> LLMReply:
        usage, attempts = Usage(), 0
        problems: list[str] = []
        for attempts in range(1, self.settings.reask + 2):  # noqa: B007
            self.breaker.check()
            try:
                out = await self.structured.ainvoke(self._turn(messages, problems),
                                                     config=config)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.breaker.record(ok=False)
                raise _backend_error(error) from error
            self.breaker.record(ok=True)
            reply = self._judge(out, validate, usage, attempts)
            if isinstance(reply, LLMReply):
                return reply
            usage, problems = reply
        raise self._invalid(problems, usage, attempts)

    @staticmethod
    def _turn(messages: list[BaseMessage], problems: list[str]) -> list[BaseMessage]:
        return [*messages, HumanMessage(reask_text(problems))] if problems else messages

    @staticmethod
    def _judge(out: dict[str, Any], validate: Validator, usage: Usage,
               attempts: int) -> LLMReply | tuple[Usage, list[str]]:
        usage = usage + _usage(out.get("raw"))
        parsed = out.get("parsed")
        if isinstance(parsed, dict):
            try:
                answer = ModelAnswer.model_validate(parsed)
            except ValidationError as error:
                problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                            for e in error.errors()[:8]]
            else:
                problems = validate(answer)
                if not problems:
                    return LLMReply(answer, usage, attempts)
        else:
            raw = out.get("raw")
            refusal = getattr(raw, "additional_kwargs", {}).get("refusal")
            problems = [f"the model refused: {refusal}" if refusal else
                        "the answer was empty or not valid JSON; reply with one JSON object"]
        log.info("answer rejected (attempt %d): %d problems", attempts, len(problems))
        return usage, problems

    @staticmethod
    def _invalid(problems: list[str], usage: Usage, attempts: int) -> OutputValidationError:
        return OutputValidationError(
            f"the model's answer stayed invalid after {attempts} attempts: {problems[0]}",
            problems=problems, attempts=attempts, usage=usage.model_dump())
