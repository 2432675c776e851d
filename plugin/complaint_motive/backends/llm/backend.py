"""The LLM backend: one structured-output call per complaint through ``ChatOpenAI``.

Each attempt is a child run of the caller's run (``config``), named ``answer`` or
``re-ask``, so a trace shows the analyzer, its model calls and its re-asks.

LangChain does not re-ask when an answer fails validation, so the bounded re-ask is here:
the problems go back to the model once, then a typed error. Token usage is summed over
every attempt and reported even when the call finally fails. Retries, the rate-limit
backoff shared by concurrent calls, the total deadline and the circuit breaker are in
``limits``; reasoning models' quirks in ``reasoning``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config
from pydantic import ValidationError

from ...analysis.prompts import reask_text
from ...analysis.schema import ModelAnswer, Usage, model_facing_schema
from ...analysis.types import Listener, Reply
from ...analysis.validation import Checked, tidy
from ...errors import (
    BackendError,
    ComplaintMotiveError,
    ConfigurationError,
    DegenerateAnswerError,
    OutputTruncatedError,
    OutputValidationError,
)
from ...settings import Settings, StructuredOutputMethod
from ...vocab import BackendName
from .limits import (
    CallLimits,
    CircuitBreaker,
    bound_requests,
    check_answer,
    method_rejection,
)
from .reasoning import accepts_temperature, after_thinking, parse_past_thinking

if TYPE_CHECKING:
    from ...analysis.types import Prepared

log = logging.getLogger(__name__)

Validator = Callable[[ModelAnswer], Checked]


def _usage(message: Any) -> Usage:
    meta = getattr(message, "usage_metadata", None) or {}
    return Usage(input_tokens=meta.get("input_tokens", 0),
                 output_tokens=meta.get("output_tokens", 0),
                 total_tokens=meta.get("total_tokens", 0))


#: What ``structured_output="auto"`` tries, in order, when the endpoint rejects a method.
AUTO_ORDER: tuple[StructuredOutputMethod, ...] = ("json_schema", "function_calling",
                                                  "json_mode")
def request_schema(method: StructuredOutputMethod, clauses: int, handles: int
                   ) -> dict[str, Any]:
    """The schema a request carries. ``json_object_schema`` (llama.cpp) compiles it to a
    grammar per request and never shows it to the model: bounded, and narrowed to this
    complaint's clause numbers and guidance handles, so no other can be produced. The
    strict modes of ``json_schema`` and ``function_calling`` get the same schema for every
    request (OpenAI caches a schema; a tools schema is part of the prompt's cached
    prefix), without ``maxItems`` and ``maxLength``, which OpenAI's strict mode does not
    list among its keywords: validation cuts lists and texts to the bounds instead."""
    if method == "json_object_schema":
        return model_facing_schema(clauses=clauses, handles=handles)
    return model_facing_schema(strict=True)


def _cut_off_usage(error: Exception) -> Usage | None:
    """The usage of an answer the ``openai`` client refused to parse because it hit the
    output bound (``LengthFinishReasonError``), or None for any other error."""
    import openai

    if not isinstance(error, openai.LengthFinishReasonError):
        return None
    usage = error.completion.usage
    if usage is None:
        return Usage()
    return Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
                 total_tokens=usage.total_tokens)


def _backend_error(error: Exception) -> BackendError | ConfigurationError:
    import openai

    if (said := method_rejection(error)) is not None:
        return ConfigurationError(
            f"the LLM endpoint rejected the structured-output request "
            f"({getattr(error, 'status_code', '?')}): {said[:300]}. Set structured_output "
            "(json_schema, function_calling, json_mode or auto) or a provider recipe "
            "(provider=…)", server_message=said[:1000])

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
    """The model's rejected answer as it goes back in the re-ask: the assistant's turn, as
    text, and the turn that carries the problems is added by the caller. Nothing when there
    is no answer to show (empty, a refusal).

    A tool call goes back as its arguments' JSON, not as a tool call answered by a tool
    message: llama.cpp's server refuses an assistant turn without text (LangChain sends
    ``content: null`` beside tool calls) and chat formats without a tool role drop the tool
    message, so the model would never see the problems. Text is read by every provider."""
    tool_calls = getattr(raw, "tool_calls", None) or []
    if tool_calls:
        return [AIMessage(content=json.dumps(tool_calls[0].get("args") or {},
                                             ensure_ascii=False))]
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

    def __init__(self, prepared: Prepared, messages: list[BaseMessage], validate: Validator,
                 *, attempts_allowed: int, model: str) -> None:
        self.prepared = prepared
        self.messages, self.validate, self.model = messages, validate, model
        self.attempts_allowed = attempts_allowed
        self.attempts = 0
        self.usage = Usage()
        self.problems: list[str] = []
        #: How the last answer was degenerate (valid, and no answer), if it was.
        self.degenerate: list[str] = []
        self.rejected: list[BaseMessage] = []
        self.cut_off = False
        #: Set by the backend: the output bound, and how the request carries it.
        self.max_tokens: int | None = None
        self.output_bound = "max_tokens"

    def next_request(self) -> list[BaseMessage] | None:
        if self.attempts >= self.attempts_allowed:
            return None
        self.attempts += 1
        if not self.problems:
            return self.messages
        return [*self.messages, *self.rejected, HumanMessage(reask_text(self.problems))]

    def truncated(self, usage: Usage) -> None:
        """The answer stopped at the output bound: count its tokens, ask for a shorter one."""
        self.usage = self.usage + usage
        self.cut_off = True
        self.problems = [f"the answer was cut off at the output limit ({self.output_bound}); "
                         "answer again more briefly: short quotes, one-sentence "
                         "explanations, a short reply"]
        log.info("answer cut off at the output bound (attempt %d)", self.attempts)

    def attempt_config(self, config: RunnableConfig | None) -> RunnableConfig:
        """The caller's config for this attempt's model call, so its run is named."""
        return patch_config(config, run_name="answer" if self.attempts <= 1 else "re-ask")

    def receive(self, out: dict[str, Any]) -> Reply | None:
        """The reply when the answer is valid (after repair); otherwise remember why, and
        the answer itself, for the re-ask."""
        raw, usage = out.get("raw"), out.get("cut_off_usage") or _usage(out.get("raw"))
        finish = (getattr(raw, "response_metadata", None) or {}).get("finish_reason")
        # llama-cpp-python reports a cut-off tool call as finish_reason=tool_calls: an
        # unparsable answer as long as the bound was cut off too.
        if "cut_off_usage" in out or finish == "length" or (
                not isinstance(out.get("parsed"), dict) and self.max_tokens
                and usage.output_tokens >= self.max_tokens):
            self.rejected = []  # half an answer is not worth showing back
            self.truncated(usage)
            return None
        self.cut_off = False
        self.degenerate = []
        self.usage = self.usage + usage
        self.rejected = _shown_back(raw)
        parsed = out.get("parsed")
        if isinstance(parsed, dict):
            cleaned, repairs = tidy(parsed)
            try:
                answer = ModelAnswer.model_validate(cleaned)
            except ValidationError as error:
                self.problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in error.errors()[:8]]
            else:
                checked = self.validate(answer)
                checked.repairs[:0] = repairs
                self.problems = checked.problems
                self.degenerate = list(checked.degenerate)
                if not self.problems:
                    return Reply(checked, self.usage, self.attempts, "llm", self.model)
        else:
            refusal = getattr(raw, "additional_kwargs", {}).get("refusal")
            self.problems = [f"the model refused: {refusal}" if refusal else
                             "the answer was empty or not valid JSON; reply with one JSON "
                             "object"]
        log.info("answer rejected (attempt %d): %d problems", self.attempts,
                 len(self.problems))
        return None

    def invalid(self) -> OutputValidationError:
        if self.degenerate:
            return DegenerateAnswerError(
                f"the model's answer stayed degenerate after {self.attempts} attempts "
                f"({', '.join(self.degenerate)}): {self.problems[0]}",
                problems=self.problems, degenerate=self.degenerate, attempts=self.attempts,
                usage=self.usage.model_dump())
        if self.cut_off:
            return OutputTruncatedError(
                f"the model's answer was cut off at the output bound ({self.output_bound}) "
                f"on attempt {self.attempts}: raise max_tokens (COMPLAINT_MOTIVE_MAX_TOKENS)",
                problems=self.problems, attempts=self.attempts, usage=self.usage.model_dump())
        return OutputValidationError(
            f"the model's answer stayed invalid after {self.attempts} attempts: "
            f"{self.problems[0]}", problems=self.problems, attempts=self.attempts,
            usage=self.usage.model_dump())


class LLMBackend:
    """``ChatOpenAI`` with structured output, validation, one re-ask and the call limits.

    Every call carries an output bound (``max_tokens``, sent as the field the model takes)
    and ``extra_body``. ``structured_output="auto"`` tries ``AUTO_ORDER`` on a rejection of
    the method and remembers, for the process, what the endpoint accepted.
    ``http_client`` / ``http_async_client`` let tests and proxies supply the ``httpx``
    clients the ``openai`` package uses.
    """

    name: BackendName = "llm"
    local = False

    #: (base URL, model) → the method ``auto`` settled on, for the life of the process.
    _chosen: ClassVar[dict[tuple[str | None, str], StructuredOutputMethod]] = {}
    _chosen_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings, *, http_client: httpx.Client | None = None,
                 http_async_client: httpx.AsyncClient | None = None) -> None:
        import openai

        if settings.model is None:
            raise ConfigurationError(
                f"an LLM endpoint is set ({settings.openai_base_url}) but no model: set "
                "model (COMPLAINT_MOTIVE_MODEL) to the name it serves, or pick a provider "
                "recipe (provider=…)")
        self.settings = settings
        self.model_name: str = settings.model
        temperature: float | None = settings.temperature
        if not accepts_temperature(settings.model, settings.reasoning_effort):
            temperature = None  # o-series and gpt-5 reject it (400 unsupported_value)
        bound = {"max_completion_tokens": settings.max_tokens} \
            if settings.token_limit_field == "max_completion_tokens" else {}
        self._chat_options: dict[str, Any] = dict(
            model=settings.model, temperature=temperature,
            reasoning_effort=settings.reasoning_effort,
            # ChatOpenAI sends its own bound as max_completion_tokens, which many
            # OpenAI-compatible servers ignore: max_tokens travels in the body instead.
            extra_body={**({} if bound else {"max_tokens": settings.max_tokens}),
                        **settings.extra_body} or None,
            api_key=settings.openai_api_key or "not-needed",  # local servers take any key
            base_url=settings.openai_base_url, timeout=settings.timeout,
            # ``streaming=False`` set explicitly would refuse ``stream()`` too, and
            # ``MotiveAnalyzer.stream`` streams whatever the setting says.
            **({"streaming": True} if settings.stream else {}),
            max_retries=0,  # retries are ours (limits.CallLimits), shared across calls
            stream_usage=settings.stream or None,
            # Our own clients (they carry the deadline), so langchain's OPENAI_PROXY
            # handling moves here: it refuses a proxy beside given clients.
            openai_proxy=None,
            http_client=bound_requests(
                http_client or openai.DefaultHttpxClient(proxy=os.environ.get("OPENAI_PROXY")),
                settings.deadline), **bound)
        self._given_async_client = http_async_client
        self.llm = self._chat()
        self._structured: dict[StructuredOutputMethod, Any] = {}
        # An async client's pooled connections belong to the event loop that opened them:
        # each loop (every asyncio.run, so every analyze_many) gets its own client, or the
        # second batch fails on the first batch's closed loop.
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, dict[StructuredOutputMethod, Any]]] = (
                weakref.WeakKeyDictionary())
        self._first_loop_served = False
        self.limits = CallLimits(
            max_retries=settings.max_retries, rate_limit_wait=settings.rate_limit_wait,
            breaker_failures=settings.breaker_failures,
            breaker_cooldown=settings.breaker_cooldown, describe=_backend_error)
        self.breaker: CircuitBreaker = self.limits.breaker

    def _chat(self) -> Any:
        """A ``ChatOpenAI`` with a fresh async client (the caller's, when one was given)."""
        import openai
        from langchain_openai import ChatOpenAI

        async_client = self._given_async_client or openai.DefaultAsyncHttpxClient(
            proxy=os.environ.get("OPENAI_PROXY"))
        return ChatOpenAI(**self._chat_options, http_async_client=bound_requests(
            async_client, self.settings.deadline))

    def _loop_chat(self) -> tuple[Any, dict[StructuredOutputMethod, Any]]:
        """The ``ChatOpenAI`` of the running event loop, and its structured runnables."""
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            # The first loop may use the client made with ``self.llm``; later loops never.
            chat = self._chat() if self._first_loop_served else self.llm
            self._first_loop_served = True
            self._per_loop[loop] = (chat, {})
        return self._per_loop[loop]

    def async_openai_client(self) -> Any:
        """The ``openai.AsyncOpenAI`` client for the running event loop (the Batch API's
        files and batches calls)."""
        if self._given_async_client is not None:
            return self.llm.root_async_client
        return self._loop_chat()[0].root_async_client

    def _arunnable(self, method: StructuredOutputMethod, prepared: Prepared) -> Any:
        """The structured-output runnable of ``method`` for the running event loop."""
        if self._given_async_client is not None:
            return self._runnable(method, prepared)
        chat, runnables = self._loop_chat()
        if method == "json_object_schema":
            return self._structure(chat, method, prepared)
        if method not in runnables:
            runnables[method] = self._structure(chat, method, prepared)
        return runnables[method]

    @property
    def _endpoint(self) -> tuple[str | None, str]:
        return self.settings.openai_base_url, self.model_name

    @property
    def method(self) -> StructuredOutputMethod:
        """The structured-output method the next request uses."""
        if self.settings.structured_output != "auto":
            return self.settings.structured_output
        return self._chosen.get(self._endpoint, AUTO_ORDER[0])

    @property
    def schema_in_prompt(self) -> bool:
        # Until auto has settled, the prompt describes the schema too, so that a request
        # can move to json_mode without being rebuilt.
        return self.method == "json_mode" or (
            self.settings.structured_output == "auto" and self._endpoint not in self._chosen)

    def _runnable(self, method: StructuredOutputMethod, prepared: Prepared) -> Any:
        if method == "json_object_schema":  # its schema is this request's
            return self._structure(self.llm, method, prepared)
        if method not in self._structured:
            self._structured[method] = self._structure(self.llm, method, prepared)
        return self._structured[method]

    def _structure(self, chat: Any, method: StructuredOutputMethod,
                   prepared: Prepared) -> Any:
        # A dict schema, not the class: with the class, the openai client parses the answer
        # itself and a malformed answer raises before we see its text or usage.
        schema = request_schema(method, len(prepared.clauses), len(prepared.chunks))
        if method == "json_object_schema":
            return chat.with_structured_output(
                schema, method="json_mode", include_raw=True,
                response_format={"type": "json_object", "schema": schema})
        return chat.with_structured_output(
            schema, method=method, include_raw=True,
            strict=None if method == "json_mode" else True)

    def _settle(self, error: ComplaintMotiveError) -> bool:
        """On a rejection of the method under ``auto``, move to the next one; True if
        there is one to try. Logs what the endpoint settled on."""
        said = error.details.get("server_message")
        if said is None or self.settings.structured_output != "auto":
            return False
        with self._chosen_lock:
            tried = self.method
            position = AUTO_ORDER.index(tried)
            if position + 1 >= len(AUTO_ORDER):
                return False
            chosen = AUTO_ORDER[position + 1]
            self._chosen[self._endpoint] = chosen
        log.warning("structured_output=auto: the endpoint rejected %s (%s); using %s",
                    tried, str(said)[:120], chosen)
        return True

    def _accepted(self, method: StructuredOutputMethod) -> None:
        if self.settings.structured_output == "auto" and self._endpoint not in self._chosen:
            with self._chosen_lock:
                self._chosen.setdefault(self._endpoint, method)
            log.info("structured_output=auto: the endpoint accepts %s", method)

    def messages(self, prepared: Prepared) -> list[BaseMessage]:
        """The request for a prepared complaint: its guidance, its nearest exemplars."""
        from ...analysis.prompts import build_messages

        return build_messages(prepared.complaint, prepared.clauses, prepared.chunks,
                              self._exemplars(prepared),
                              schema_in_prompt=self.schema_in_prompt)

    def _exemplars(self, prepared: Prepared) -> list[Any]:
        return prepared.signals.neighbours[:self.settings.exemplars_k]

    def copyable(self, prepared: Prepared) -> dict[str, str]:
        """What the model was shown that its reply must not copy: the rules, each
        guidance chunk, each exemplar, the complaint."""
        from ...analysis.prompts import system_text

        return {"prompt's rules": system_text(schema_in_prompt=self.schema_in_prompt),
                **{f"guidance g{n}": c.text for n, c in enumerate(prepared.chunks, start=1)},
                **{f"example {n}": e.text for n, e in enumerate(self._exemplars(prepared),
                                                                start=1)},
                "complaint": prepared.complaint.text}

    # -- the Batch API's view: a request body, and a completion body read back ----------

    def request_body(self, prepared: Prepared) -> dict[str, Any]:
        """What the synchronous structured-output call would send for this complaint."""
        bound = self._runnable(self.method, prepared).steps[0].steps__["raw"]
        kwargs = {k: v for k, v in bound.kwargs.items() if not k.startswith("ls_")}
        body: dict[str, Any] = self.llm._get_request_payload(self.messages(prepared),
                                                             **kwargs)
        body.pop("stream", None)
        return body

    def parse_completion(self, body: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
        """A chat.completion body turned into what the structured-output call returns."""
        message = self.llm._create_chat_result(body).generations[0].message
        parser = self._runnable(self.method, prepared).steps[1]
        return _settled(parser.invoke({"raw": message}))

    def exchange(self, prepared: Prepared) -> _Exchange:
        """A new re-ask loop for ``prepared`` (the Batch API feeds it its first answer)."""
        copyable = self.copyable(prepared)
        exchange = _Exchange(prepared, self.messages(prepared),
                             lambda answer: prepared.check(answer, copied_from=copyable),
                             attempts_allowed=self.settings.reask + 1, model=self.model_name)
        exchange.max_tokens = self.settings.max_tokens
        exchange.output_bound = f"{self.settings.token_limit_field}={self.settings.max_tokens}"
        return exchange

    def answer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
               listener: Listener | None = None) -> Reply:
        """A valid answer after repair and at most ``reask`` re-asks, or a typed error.
        ``listener``: the first attempt is streamed, and it sees the answer as it grows."""
        exchange = self.exchange(prepared)
        while (request := exchange.next_request()) is not None:
            attempt = exchange.attempt_config(config)
            listening = listener if exchange.attempts == 1 else None
            while True:  # again with the next method when auto meets a rejection
                method = self.method

                def send(request: list[BaseMessage] = request,
                         method: StructuredOutputMethod = method,
                         attempt: RunnableConfig = attempt,
                         listening: Listener | None = listening) -> dict[str, Any]:
                    runnable = self._runnable(method, prepared)
                    try:
                        if listening is not None:
                            return _settled(_streamed(runnable, request, attempt, listening))
                        return _settled(runnable.invoke(request, config=attempt))
                    except Exception as error:
                        return _cut_off(error)

                try:
                    out = self.limits.call(send)
                except ComplaintMotiveError as error:
                    if self._settle(error):
                        continue
                    raise self._failed(exchange, error) from error
                self._accepted(method)
                break
            if (reply := exchange.receive(out)) is not None:
                return reply
        raise exchange.invalid()

    async def aanswer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
                      listener: Listener | None = None) -> Reply:
        """``answer`` for asyncio."""
        return await self.acontinue(self.exchange(prepared), config, listener=listener)

    def answer_many(self, prepared: Sequence[Prepared]) -> list[Reply | Exception]:
        """Replies one after another (batches run ``aanswer`` concurrently instead)."""
        replies: list[Reply | Exception] = []
        for ready in prepared:
            try:
                replies.append(self.answer(ready))
            except Exception as error:
                replies.append(error)
        return replies

    async def acontinue(self, exchange: _Exchange, config: RunnableConfig | None = None,
                        *, listener: Listener | None = None) -> Reply:
        """Run ``exchange`` to a valid answer or a typed error, from wherever it stands."""
        while (request := exchange.next_request()) is not None:
            attempt = exchange.attempt_config(config)
            listening = listener if exchange.attempts == 1 else None
            while True:  # again with the next method when auto meets a rejection
                method = self.method

                async def send(request: list[BaseMessage] = request,
                               method: StructuredOutputMethod = method,
                               attempt: RunnableConfig = attempt,
                               listening: Listener | None = listening) -> dict[str, Any]:
                    runnable = self._arunnable(method, exchange.prepared)
                    try:
                        if listening is not None:
                            return _settled(await _astreamed(runnable, request, attempt,
                                                             listening))
                        return _settled(await runnable.ainvoke(request, config=attempt))
                    except Exception as error:  # cancellation is a BaseException
                        return _cut_off(error)

                try:
                    out = await self.limits.acall(send)
                except ComplaintMotiveError as error:
                    if self._settle(error):
                        continue
                    raise self._failed(exchange, error) from error
                self._accepted(method)
                break
            if (reply := exchange.receive(out)) is not None:
                return reply
        raise exchange.invalid()

    def _failed(self, exchange: _Exchange,
                failure: ComplaintMotiveError) -> ComplaintMotiveError:
        failure.details.update(usage=exchange.usage.model_dump(), attempts=exchange.attempts)
        return failure


def _cut_off(error: Exception) -> dict[str, Any]:
    """An answer the ``openai`` client refused to parse because it hit the output bound
    (``LengthFinishReasonError``), as an output ``_Exchange.receive`` reads as cut off;
    any other error is raised again for the call limits."""
    if (usage := _cut_off_usage(error)) is None:
        raise error
    return {"raw": None, "parsed": None, "cut_off_usage": usage}


def _settled(out: dict[str, Any]) -> dict[str, Any]:
    """A structured-output result with a filtered answer raised as such and a thinking
    model's ``<think>`` block kept out of the parsed answer."""
    check_answer(out)
    return parse_past_thinking(out)


# -- streaming: the same request and parser, the answer seen as it is written ------------

def _parts(runnable: Any) -> tuple[Any, Any]:
    """The chat model bound to the structured-output request, and the parser after it
    (``with_structured_output(include_raw=True)`` is ``{"raw": model} | parser``)."""
    return runnable.steps[0].steps__["raw"], runnable.steps[1]


def _so_far(message: Any) -> dict[str, Any]:
    """The answer's fields parsed from what has arrived (a tool call's arguments, or the
    content past any ``<think>`` block)."""
    from langchain_core.utils.json import parse_partial_json

    if getattr(message, "tool_call_chunks", None):
        calls = getattr(message, "tool_calls", None) or []
        args = calls[0].get("args") if calls else None
        return args if isinstance(args, dict) else {}
    content = message.content if isinstance(message.content, str) else ""
    try:
        parsed = parse_partial_json(after_thinking(content)) if content else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _streamed(runnable: Any, request: list[BaseMessage], config: RunnableConfig,
              listener: Listener) -> dict[str, Any]:
    """``runnable.invoke(request)``, streamed: ``listener`` sees each step of the answer."""
    from langchain_core.messages import message_chunk_to_message

    model, parser = _parts(runnable)
    message: Any = None
    for chunk in model.stream(request, config, stream_usage=True):
        message = chunk if message is None else message + chunk
        listener(_so_far(message))
    return parser.invoke({"raw": message_chunk_to_message(message)})  # type: ignore[no-any-return]


async def _astreamed(runnable: Any, request: list[BaseMessage], config: RunnableConfig,
                     listener: Listener) -> dict[str, Any]:
    """``_streamed`` for asyncio."""
    from langchain_core.messages import message_chunk_to_message

    model, parser = _parts(runnable)
    message: Any = None
    async for chunk in model.astream(request, config, stream_usage=True):
        message = chunk if message is None else message + chunk
        listener(_so_far(message))
    return await parser.ainvoke(  # type: ignore[no-any-return]
        {"raw": message_chunk_to_message(message)})
