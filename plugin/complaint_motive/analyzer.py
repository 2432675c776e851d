"""``MotiveAnalyzer``: the one entry point for helpdesk tools and evaluation scripts.

The flow for each complaint, one way only: guards (validate, redact, flag injection) →
offline signals → retrieval (guidance steered by the signals, similar exemplars) → backend
(LLM chain or offline analyzer) → validation → enrichment → ``MotiveAnalysis``.

>>> analyzer = MotiveAnalyzer.from_settings()                 # doctest: +SKIP
>>> analyzer.analyze("退款申请半个月了还没到账!").primary_motive.id  # doctest: +SKIP
'compensation'
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel

from .errors import BackendError, ComplaintMotiveError, InputError, OutputValidationError
from .guards import injection_phrases, redact
from .inputs import ComplaintInput, to_input
from .schema import Meta, ModelAnswer, MotiveAnalysis, Usage
from .settings import Settings

if TYPE_CHECKING:
    import httpx
    from langchain_core.messages import BaseMessage

    from .chain import LLMBackend
    from .index import KnowledgeIndex, RetrievedChunk
    from .offline import MotiveModel, Signals

log = logging.getLogger(__name__)

Fallback = Literal["none", "offline"]


class Outcome(BaseModel):
    """One input's outcome in a batch: a result or an error, never both, never missing."""

    index: int
    id: str | None = None
    result: MotiveAnalysis | None = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class _Prepared:
    complaint: ComplaintInput
    signals: Signals
    chunks: list[RetrievedChunk]
    messages: list[BaseMessage] | None
    injection: list[str]
    redactions: int
    started: float


class MotiveAnalyzer(Runnable[Any, MotiveAnalysis]):
    """Analyse complaints with the configured backend; a LangChain ``Runnable``, so
    ``invoke`` / ``ainvoke`` / ``batch`` / ``abatch`` and LCEL composition work."""

    def __init__(self, settings: Settings, *, index: KnowledgeIndex | None = None,
                 llm: LLMBackend | None = None) -> None:
        from .index import KnowledgeIndex

        self.settings = settings
        self.backend: Literal["llm", "offline"] = settings.resolved_backend()
        self.index = index or KnowledgeIndex.from_settings(settings)
        if self.backend == "llm" and llm is None:
            from .chain import LLMBackend

            llm = LLMBackend(settings)
        self.llm = llm
        self._model: MotiveModel | None = None
        if settings.backend == "auto" and self.backend == "offline":
            log.info("no LLM endpoint configured: using the offline analyzer")

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      http_client: httpx.Client | None = None,
                      http_async_client: httpx.AsyncClient | None = None,
                      **overrides: Any) -> MotiveAnalyzer:
        """Build from settings (environment, TOML file) with keyword overrides on top.

        ``http_client`` / ``http_async_client`` are handed to the ``openai`` client.
        """
        settings = settings.model_copy(update=overrides) if settings else Settings(**overrides)
        llm = None
        if settings.resolved_backend() == "llm":
            from .chain import LLMBackend

            llm = LLMBackend(settings, http_client=http_client,
                             http_async_client=http_async_client)
        return cls(settings, llm=llm)

    # -- the pieces every call shares ------------------------------------------------------

    @property
    def model(self) -> MotiveModel:
        if self._model is None:
            from .offline import MotiveModel

            self.index.ensure()
            folder = self.settings.index_dir / "models"
            self._model = MotiveModel.load_or_train(folder, self.index.exemplars)
        return self._model

    def warm_up(self) -> None:
        """Build or open the index and the trained model now rather than on first use."""
        self.index.ensure()
        _ = self.model

    def _prepare(self, raw: Any, *, with_messages: bool) -> _Prepared:
        from .offline import collect_signals
        from .prompts import build_messages
        from .retrieval import retrieve_guidance

        started = time.perf_counter()
        complaint = to_input(raw, max_chars=self.settings.max_chars,
                             truncate=self.settings.truncate)
        redactions = 0
        if self.settings.redact_pii:
            masked = redact(complaint.text)
            redactions = masked.count
            if masked.count:
                complaint = complaint.model_copy(update={
                    "text": masked.text,
                    "turns": [t.model_copy(update={"text": redact(t.text).text})
                              for t in complaint.turns]})
        injection = injection_phrases(complaint.text)
        neighbours = self.index.similar_exemplars(complaint.text, 8)
        signals = collect_signals(self.model, complaint.text, neighbours)
        chunks = retrieve_guidance(self.index, complaint.text, self.settings.top_k,
                                   motives=signals.hint_motives())
        messages = None
        if with_messages and self.llm is not None:
            examples = neighbours[:self.settings.exemplars_k]
            messages = build_messages(complaint, chunks, examples,
                                      schema_in_prompt=self.llm.schema_in_prompt)
        return _Prepared(complaint, signals, chunks, messages, injection, redactions, started)

    def _validator(self, prepared: _Prepared) -> Any:
        from .validation import answer_problems

        retrieved = {c.chunk_id for c in prepared.chunks}
        return lambda answer: answer_problems(
            answer, prepared.complaint.text, retrieved,
            max_promised_amount=self.settings.max_promised_amount)

    def _offline(self, prepared: _Prepared, *, degraded_reason: str | None = None,
                 usage: Usage | None = None, attempts: int = 0) -> MotiveAnalysis:
        from .offline import offline_answer

        answer = offline_answer(prepared.complaint, prepared.signals, self.model,
                                prepared.chunks)
        problems = self._validator(prepared)(answer)
        if problems:  # the offline answer is built to pass; a failure here is a bug
            raise OutputValidationError(f"offline answer failed validation: {problems[0]}",
                                        problems=problems)
        warnings = [f"degraded: {degraded_reason}"] if degraded_reason else []
        return self._finish(prepared, answer, backend="offline", usage=usage or Usage(),
                            attempts=attempts, degraded_reason=degraded_reason,
                            warnings=warnings)

    def _finish(self, prepared: _Prepared, answer: ModelAnswer, *,
                backend: Literal["llm", "offline"], usage: Usage, attempts: int,
                degraded_reason: str | None = None,
                warnings: list[str] | None = None) -> MotiveAnalysis:
        from .enrich import build_analysis
        from .prompts import prompt_version
        from .taxonomy import load_taxonomy

        warnings = [*prepared.complaint.warnings, *(warnings or [])]
        if prepared.injection:
            warnings.append("the complaint contains instructions aimed at the model; "
                            "they were treated as data")
        meta = Meta(
            backend=backend,
            model=self.settings.model if backend == "llm" else f"offline/{self.model.version}",
            prompt_version=prompt_version(), corpus_version=self.index.versions()["guidance"],
            taxonomy_version=load_taxonomy().version,
            latency_ms=round((time.perf_counter() - prepared.started) * 1000, 2),
            attempts=attempts or 1, usage=usage, cost_usd=self._cost(usage),
            degraded=degraded_reason is not None, degraded_reason=degraded_reason,
            warnings=warnings, redactions=prepared.redactions)
        return build_analysis(answer, complaint=prepared.complaint, signals=prepared.signals,
                              chunks=prepared.chunks, meta=meta, settings=self.settings,
                              injection=prepared.injection)

    def _cost(self, usage: Usage) -> float | None:
        price = self.settings.prices.get(self.settings.model)
        if price is None or not usage.total_tokens:
            return None
        return round((usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1e6, 6)

    def _fallback(self, fallback: Fallback | None) -> Fallback:
        return fallback or self.settings.fallback

    def _degrade(self, prepared: _Prepared, error: ComplaintMotiveError,
                 fallback: Fallback | None) -> MotiveAnalysis:
        if self._fallback(fallback) != "offline" or not isinstance(
                error, BackendError | OutputValidationError):
            raise error
        usage = Usage(**error.details.get("usage", {}))
        log.warning("LLM backend failed (%s); answering offline", error.kind)
        return self._offline(prepared, degraded_reason=f"{error.kind}: {error.message}",
                             usage=usage, attempts=error.details.get("attempts", 0))

    # -- the public API ------------------------------------------------------------------

    def analyze(self, complaint: Any, *, fallback: Fallback | None = None,
                config: RunnableConfig | None = None) -> MotiveAnalysis:
        """Analyse one complaint: a text, a ``[n] role: text`` transcript, or a list of turns.

        Raises an ``InputError`` for input that cannot be analysed, and a ``BackendError``
        or ``OutputValidationError`` when the LLM fails (unless ``fallback="offline"``).
        """
        prepared = self._prepare(complaint, with_messages=True)
        if self.llm is None or prepared.messages is None:
            return self._offline(prepared)
        try:
            reply = self.llm.answer(prepared.messages, self._validator(prepared), config)
        except (BackendError, OutputValidationError) as error:
            return self._degrade(prepared, error, fallback)
        return self._finish(prepared, reply.answer, backend="llm", usage=reply.usage,
                            attempts=reply.attempts)

    async def aanalyze(self, complaint: Any, *, fallback: Fallback | None = None,
                       config: RunnableConfig | None = None) -> MotiveAnalysis:
        """``analyze`` for asyncio; local work runs in a thread so the loop keeps moving."""
        prepared = await asyncio.to_thread(self._prepare, complaint, with_messages=True)
        if self.llm is None or prepared.messages is None:
            return await asyncio.to_thread(self._offline, prepared)
        try:
            reply = await self.llm.aanswer(prepared.messages, self._validator(prepared),
                                           config)
        except (BackendError, OutputValidationError) as error:
            return await asyncio.to_thread(self._degrade, prepared, error, fallback)
        return self._finish(prepared, reply.answer, backend="llm", usage=reply.usage,
                            attempts=reply.attempts)

    async def aoutcome(self, item: Any, *, index: int = 0,
                       fallback: Fallback | None = None) -> Outcome:
        """Analyse one input of a batch: a complaint or an ``{"id": …, "text": …}`` record.
        Never raises for a bad input or a failed call; the error is the outcome."""
        item_id, payload = _unpack(item)
        try:
            result = await self.aanalyze(payload, fallback=fallback)
        except ComplaintMotiveError as error:
            return Outcome(index=index, id=item_id, error=error.to_dict())
        except Exception as error:  # a bug must not lose the other inputs
            log.exception("unexpected failure on input %d", index)
            return Outcome(index=index, id=item_id, error={
                "kind": "internal", "type": type(error).__name__,
                "message": "unexpected internal error; see the log"})
        return Outcome(index=index, id=item_id, result=result)

    async def aanalyze_many(self, items: Iterable[Any], *, concurrency: int = 8,
                            fallback: Fallback | None = None) -> list[Outcome]:
        """One ``Outcome`` per input, in input order; a failure is that input's error value.

        Items may be complaints or ``{"id": …, "text": …}`` records.
        """
        if isinstance(items, str | bytes):
            raise InputError("analyze_many takes a list of complaints, not one string")
        gate = asyncio.Semaphore(max(1, concurrency))

        async def gated(position: int, item: Any) -> Outcome:
            async with gate:
                return await self.aoutcome(item, index=position, fallback=fallback)

        await asyncio.to_thread(self.warm_up)
        return list(await asyncio.gather(*(gated(i, x) for i, x in enumerate(items))))

    def analyze_many(self, items: Iterable[Any], *, concurrency: int = 8,
                     fallback: Fallback | None = None) -> list[Outcome]:
        """Synchronous ``aanalyze_many`` (call ``aanalyze_many`` from inside an event loop)."""
        return asyncio.run(self.aanalyze_many(items, concurrency=concurrency,
                                              fallback=fallback))

    def record_correction(self, result: MotiveAnalysis, *, text: str,
                          motive: str | None = None, stage: str | None = None,
                          note: str | None = None, path: Path | None = None) -> Path:
        """Append an agent's correction of ``result`` to the corrections file."""
        from .corrections import record_correction

        return record_correction(result, text=text, motive=motive, stage=stage, note=note,
                                 path=path or self.settings.corrections_file)

    # -- Runnable ------------------------------------------------------------------------

    def invoke(self, input: Any, config: RunnableConfig | None = None,
               **kwargs: Any) -> MotiveAnalysis:
        return self.analyze(input, config=config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> MotiveAnalysis:
        return await self.aanalyze(input, config=config, **kwargs)


def _unpack(item: Any) -> tuple[str | None, Any]:
    if isinstance(item, dict) and ("text" in item or "turns" in item):
        raw_id = item.get("id")
        return (None if raw_id is None else str(raw_id)), item.get("text", item.get("turns"))
    return None, item
