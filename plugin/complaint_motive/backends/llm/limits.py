"""What one call to the provider may cost: retries, a rate-limit backoff shared by every
call of a backend, a total deadline per request, and the circuit breaker.

The ``openai`` client's own retries are switched off (``max_retries=0``): it retries every
429 (``insufficient_quota`` included) and every timeout ``max_retries`` times, each call on
its own clock, with no idea of the other calls in flight. In a batch of 40 at concurrency 8,
a 3 s burst of 429s without ``Retry-After`` failed 36 items that way. Here instead:

- a 429 closes one gate for the whole backend: every call waits it out (``Retry-After``
  when the server sends one, else exponential backoff), and an item fails only after
  ``rate_limit_wait`` seconds of waiting; ``insufficient_quota`` is a ``ConfigurationError``
  at once (waiting does not buy quota);
- connection errors and 5xx are retried ``max_retries`` times with backoff; a timeout at
  most once (a timed-out generation re-run is billed again);
- only connection errors, timeouts and 5xx count toward the circuit breaker: a 400, a
  content-filter hit or a 429 comes from a healthy endpoint;
- half-open, the breaker lets exactly one trial request through; the others are refused
  until it returns;
- ``deadline`` bounds a whole request: httpx's timeout bounds only the wait between two
  bytes, so a server trickling its answer held a 2 s call for 8.6 s.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import logging
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ...errors import (
    BackendError,
    BackendUnavailable,
    ComplaintMotiveError,
    ConfigurationError,
    ContentFilterError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Describe = Callable[[Exception], ComplaintMotiveError]

# The openai client's backoff, kept for the calls we now retry ourselves
# (openai/_constants.py: INITIAL_RETRY_DELAY = 0.5, MAX_RETRY_DELAY = 8.0).
INITIAL_DELAY, MAX_DELAY = 0.5, 8.0
_DEADLINE_NOTE = "total deadline"


def backoff(step: int) -> float:
    """Seconds to wait before retry ``step`` (1, 2, …): 0.5 s doubling to at most 8 s, less
    up to a quarter of jitter, as the openai client does."""
    return min(INITIAL_DELAY * 2.0 ** max(step - 1, 0), MAX_DELAY) * (1 - 0.25 * random.random())


# -- what a failure means --------------------------------------------------------------------

FailureKind = Literal["rate_limit", "timeout", "transient", "final"]


@dataclass(frozen=True)
class Failure:
    """One failed request: the error to raise if it is not retried, how it may be retried,
    and whether it says the endpoint is down."""

    error: ComplaintMotiveError
    kind: FailureKind
    trips_breaker: bool = False
    retry_after: float | None = None


def _body_error(error: Any) -> dict[str, Any]:
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return body if isinstance(body, dict) else {}


def _causes(error: BaseException) -> list[BaseException]:
    """The chain of errors behind ``error`` (langchain wraps openai's, which wraps httpx's)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` (OpenAI, Azure), then
    ``retry-after`` in seconds or as an HTTP date."""
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def is_content_filtered(body: dict[str, Any]) -> bool:
    """Azure's content filter, in the error body of a 400: ``code: content_filter`` (the
    inner error names ``ResponsibleAIPolicyViolation``)."""
    inner = body.get("innererror")
    inner = inner if isinstance(inner, dict) else {}
    return body.get("code") == "content_filter" or (
        inner.get("code") == "ResponsibleAIPolicyViolation")


_FILTERED = ("the provider's content filter blocked this complaint ({where}); the endpoint "
             "is healthy. Review the text by hand, or use fallback='offline' to answer it "
             "offline")


#: A rejection that names these fields is about the structured-output method, whatever its
#: status code (llama-cpp-python's server answers json_schema with a 500).
_METHOD_FIELDS = re.compile(r"response_format|tool_choice|\btools\b")


def _server_message(error: Exception) -> str:
    """What the server said, from its error body (``openai`` keeps the parsed JSON)."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        said = inner.get("message") if isinstance(inner, dict) else inner
        if said:
            return str(said)
    return str(getattr(error, "message", "") or error)


def method_rejection(error: Exception) -> str | None:
    """The server's message when it refused the request's structured-output fields."""
    import openai

    if isinstance(error, openai.APIStatusError) and error.status_code not in (401, 403, 429):
        said = _server_message(error)
        if _METHOD_FIELDS.search(said):
            return said
    return None


def classify(error: Exception, describe: Describe) -> Failure:
    """What ``error`` (raised by the openai client or the structured-output parser) means
    for retries and the breaker; ``describe`` words the errors this module has no more to
    say about."""
    import openai

    if isinstance(error, ComplaintMotiveError):  # already worded (e.g. by check_answer)
        return Failure(error, "final")
    if isinstance(error, openai.RateLimitError):
        body = _body_error(error)
        if "insufficient_quota" in (body.get("code"), body.get("type")):
            return Failure(ConfigurationError(
                "the LLM account has no quota left (429 insufficient_quota): add credit or "
                "raise the limit in the provider's billing settings; retrying will not help"),
                "final")
        return Failure(BackendError(
            "the LLM endpoint kept rate limiting (429) for longer than rate_limit_wait "
            "allows; raise rate_limit_wait, lower concurrency or try later"),
            "rate_limit", retry_after=retry_after(error.response.headers))
    if isinstance(error, openai.APITimeoutError):
        if late := next((e for e in _causes(error) if _DEADLINE_NOTE in str(e)), None):
            return Failure(BackendError(
                f"the LLM request ran past its {late}: the server kept the "
                "connection alive without finishing; raise deadline or try later"),
                "timeout", trips_breaker=True)
        return Failure(describe(error), "timeout", trips_breaker=True)
    if isinstance(error, openai.APIConnectionError):
        return Failure(describe(error), "transient", trips_breaker=True)
    if isinstance(error, openai.BadRequestError) and is_content_filtered(_body_error(error)):
        return Failure(ContentFilterError(_FILTERED.format(where="400 content_filter on the "
                                                                 "prompt")), "final")
    if isinstance(error, openai.ContentFilterFinishReasonError) or (
            type(error).__name__ == "OpenAIRefusalError" and "content filter" in str(error)):
        return Failure(ContentFilterError(_FILTERED.format(
            where="finish_reason content_filter on the answer")), "final")
    said = method_rejection(error)
    if said is not None and "thinking" not in said.lower():  # (thinking mode: see below)
        return Failure(describe(error), "final")  # will not change on retry; endpoint is up
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 408:
            return Failure(describe(error), "timeout", trips_breaker=True)
        if status == 409 or status >= 500:
            return Failure(describe(error), "transient", trips_breaker=status >= 500)
    if isinstance(error, openai.BadRequestError) and "thinking" in str(
            getattr(error, "message", "")).lower():
        described = describe(error)
        return Failure(type(described)(
            f"{described.message} The model is in thinking mode: turn it off with extra_body "
            "(Qwen: {'enable_thinking': False}; DeepSeek: {'thinking': {'type': "
            "'disabled'}}); the qwen and deepseek recipes do", **described.details), "final")
    return Failure(describe(error), "final")


def check_answer(out: dict[str, Any]) -> None:
    """Raise ``ContentFilterError`` when the answer was cut by a content filter
    (``finish_reason: content_filter``): re-asking the same complaint meets the same filter."""
    raw = out.get("raw")
    finish = (getattr(raw, "response_metadata", None) or {}).get("finish_reason")
    if finish == "content_filter":
        raise ContentFilterError(_FILTERED.format(where="finish_reason content_filter on "
                                                        "the answer"))


# -- the shared rate-limit gate ----------------------------------------------------------------

class RateGate:
    """One backoff for every call of a backend: the first 429 of a round closes the gate;
    the 429s of requests already in flight join that round instead of lengthening it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round = 0
        self._streak = 0
        self._open_at = 0.0

    def ticket(self) -> tuple[int, float]:
        """The current round, and the seconds until the gate opens (0: send now)."""
        with self._lock:
            return self._round, max(self._open_at - time.monotonic(), 0.0)

    def throttle(self, round_sent: int, server_delay: float | None) -> float:
        """Record a 429 for a request sent in ``round_sent``; the seconds until the gate
        opens again."""
        with self._lock:
            now = time.monotonic()
            if round_sent == self._round:
                self._round += 1
                self._streak += 1
                # The first 429 waits what the server asks; a 429 again right after it
                # backs off further (Retry-After is a floor, not a promise).
                delay = backoff(self._streak) if server_delay is None else (
                    server_delay if self._streak == 1
                    else max(server_delay, backoff(self._streak - 1)))
                self._open_at = max(self._open_at, now + delay)
                log.warning("rate limited (429): every call of this backend waits %.2f s",
                            delay)
            elif server_delay is not None:
                self._open_at = max(self._open_at, now + server_delay)
            return max(self._open_at - now, 0.0)

    def passed(self) -> None:
        with self._lock:
            self._streak = 0


# -- the circuit breaker -------------------------------------------------------------------------

class CircuitBreaker:
    """Open after ``failures`` consecutive failed requests (connection errors, timeouts,
    5xx); after ``cooldown`` seconds let exactly one trial request through (half-open),
    refusing the others until it returns; close on its success, reopen on its failure."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures, self.cooldown = failures, cooldown
        self._count, self._opened_at = 0, 0.0
        self._trial_out = False
        self._lock = threading.Lock()

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        with self._lock:
            if self._count < self.failures:
                return "closed"
            return "half_open" if self._trial_out else "open"

    def admit(self) -> bool:
        """Let a request through (``True`` when it is the half-open trial) or raise
        ``BackendUnavailable``."""
        with self._lock:
            if self._count < self.failures:
                return False
            waited = time.monotonic() - self._opened_at
            if self._trial_out or waited < self.cooldown:
                left = "until a trial call returns" if self._trial_out else \
                    f"for another {self.cooldown - waited:.0f} s"
                raise BackendUnavailable(
                    f"the LLM endpoint failed {self._count} times in a row; not calling it "
                    f"{left} (use fallback='offline' to keep answering)")
            self._trial_out = True
            return True

    def record(self, trial: bool, *, failed: bool) -> None:
        """The outcome of an admitted request; ``failed`` only for what says the endpoint
        is down (anything else the server answered shows it alive)."""
        with self._lock:
            if trial:
                self._trial_out = False
            if not failed:
                self._count = 0
                return
            self._count = self.failures if trial else self._count + 1
            if self._count >= self.failures:
                self._opened_at = time.monotonic()

    def abandon(self, trial: bool) -> None:
        """An admitted request ended without an answer (cancelled): the next caller may try."""
        if trial:
            with self._lock:
                self._trial_out = False


# -- the retry loop ------------------------------------------------------------------------------

class CallLimits:
    """Retries, the shared rate-limit gate and the breaker around one backend's requests.

    >>> limits = CallLimits(settings, describe=str_error)  # doctest: +SKIP
    >>> limits.call(lambda: llm.invoke(messages))         # doctest: +SKIP
    """

    def __init__(self, *, max_retries: int, rate_limit_wait: float, breaker_failures: int,
                 breaker_cooldown: float, describe: Describe) -> None:
        self.max_retries, self.rate_limit_wait = max_retries, rate_limit_wait
        self.describe = describe
        self.gate = RateGate()
        self.breaker = CircuitBreaker(breaker_failures, breaker_cooldown)

    def _next(self, failure: Failure, state: dict[str, float], round_sent: int) -> float:
        """Seconds to wait before the next try, or raise ``failure.error``."""
        if failure.kind == "rate_limit":
            wait = self.gate.throttle(round_sent, failure.retry_after)
            state.setdefault("limited_since", time.monotonic())
            if time.monotonic() + wait - state["limited_since"] > self.rate_limit_wait:
                raise failure.error
            return 0.0  # the wait is the gate's, taken before the next request
        if failure.kind == "timeout" and state["timeouts"] < min(self.max_retries, 1):
            state["timeouts"] += 1
            return 0.0
        if failure.kind == "transient" and state["retries"] < self.max_retries:
            state["retries"] += 1
            return backoff(int(state["retries"]))
        raise failure.error

    def call(self, send: Callable[[], T]) -> T:
        """``send()`` under the limits, from synchronous code."""
        state: dict[str, float] = {"timeouts": 0, "retries": 0}
        while True:
            while (ticket := self.gate.ticket())[1] > 0:
                time.sleep(ticket[1])
            trial = self.breaker.admit()
            try:
                result = send()
            except Exception as error:
                failure = classify(error, self.describe)
                self.breaker.record(trial, failed=failure.trips_breaker)
                pause = self._next(failure, state, ticket[0])
                if pause:
                    time.sleep(pause)
                continue
            except BaseException:
                self.breaker.abandon(trial)
                raise
            self.breaker.record(trial, failed=False)
            self.gate.passed()
            return result

    async def acall(self, send: Callable[[], Awaitable[T]]) -> T:
        """``await send()`` under the limits."""
        state: dict[str, float] = {"timeouts": 0, "retries": 0}
        while True:
            while (ticket := self.gate.ticket())[1] > 0:
                await asyncio.sleep(ticket[1])
            trial = self.breaker.admit()
            try:
                result = await send()
            except Exception as error:
                failure = classify(error, self.describe)
                self.breaker.record(trial, failed=failure.trips_breaker)
                pause = self._next(failure, state, ticket[0])
                if pause:
                    await asyncio.sleep(pause)
                continue
            except BaseException:  # cancelled: no verdict on the endpoint
                self.breaker.abandon(trial)
                raise
            self.breaker.record(trial, failed=False)
            self.gate.passed()
            return result


# -- the total deadline --------------------------------------------------------------------------

def bound_requests(client: Any, deadline: float) -> Any:
    """Give every chat-completion request of an httpx client (``httpx`` or ``httpx2``, sync
    or async) a total deadline, through the client's public event hooks: each timeout is
    clamped to the deadline, and the body is read against the clock, so a server that
    trickles bytes is cut off. Returns the client."""
    home = next(base.__module__ for base in type(client).__mro__
                if base.__name__ in ("Client", "AsyncClient")
                and base.__module__.split(".")[0] in ("httpx", "httpx2"))
    module = importlib.import_module(home.split(".")[0])
    starts: dict[int, float] = {}

    def chat(request: Any) -> bool:
        return str(request.url.path).endswith("/chat/completions")

    def on_request(request: Any) -> None:
        if not chat(request):
            return
        starts[id(request)] = time.monotonic()
        timeouts = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {
            key: deadline if value is None else min(value, deadline)
            for key, value in {**dict.fromkeys(("connect", "read", "write", "pool")),
                               **timeouts}.items()}

    def on_response(response: Any) -> None:
        started = starts.pop(id(response.request), None)
        if started is None:
            return
        expires = started + deadline
        inner = response.stream

        def late() -> Exception:
            return module.ReadTimeout(f"{_DEADLINE_NOTE} of {deadline:g} s",
                                      request=response.request)

        if hasattr(inner, "__aiter__"):
            response.stream = async_stream(inner, expires, late)
        else:
            response.stream = sync_stream(inner, expires, late)

    # httpx checks the stream's type before closing it: the wrappers are its own kinds.
    sync_stream = type("DeadlineStream", (_DeadlineStream, module.SyncByteStream), {})
    async_stream = type("AsyncDeadlineStream", (_AsyncDeadlineStream, module.AsyncByteStream),
                        {})

    request_hook: Any = on_request
    response_hook: Any = on_response
    if isinstance(client, module.AsyncClient):
        async def aon_request(request: Any) -> None:
            on_request(request)

        async def aon_response(response: Any) -> None:
            on_response(response)

        request_hook, response_hook = aon_request, aon_response
    request_hook.bounds_deadline = response_hook.bounds_deadline = True
    # A client handed to a second analyzer gets the new deadline, not two of them.
    kept = {kind: [hook for hook in hooks if not getattr(hook, "bounds_deadline", False)]
            for kind, hooks in client.event_hooks.items()}
    client.event_hooks = {"request": [*kept.get("request", []), request_hook],
                          "response": [*kept.get("response", []), response_hook]}
    return client


class _DeadlineStream:
    def __init__(self, inner: Any, expires: float, late: Callable[[], Exception]) -> None:
        self.inner, self.expires, self.late = inner, expires, late

    def __iter__(self) -> Any:
        for chunk in self.inner:
            if time.monotonic() > self.expires:
                self.close()
                raise self.late()
            yield chunk

    def close(self) -> None:
        self.inner.close()


class _AsyncDeadlineStream:
    def __init__(self, inner: Any, expires: float, late: Callable[[], Exception]) -> None:
        self.inner, self.expires, self.late = inner, expires, late

    async def __aiter__(self) -> Any:
        # The wait for each chunk is bounded too: a server that goes quiet mid-answer.
        iterator = self.inner.__aiter__()
        while True:
            left = self.expires - time.monotonic()
            if left <= 0:
                await self.aclose()
                raise self.late()
            try:
                chunk = await asyncio.wait_for(iterator.__anext__(), timeout=left)
            except StopAsyncIteration:
                return
            except TimeoutError:
                await self.aclose()
                raise self.late() from None
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()
