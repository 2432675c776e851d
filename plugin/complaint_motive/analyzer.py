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
import traceback
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel

from .errors import BackendError, ComplaintMotiveError, InputError, OutputValidationError
from .guards import injection_phrases, redact
from .inputs import ComplaintInput, to_input
from .schema import Meta, ModelAnswer, MotiveAnalysis, Usage
from .settings import Settings, load_settings
from .vocab import BackendName, Fallback

if TYPE_CHECKING:
    import httpx
    from langchain_core.messages import BaseMessage

    from .backends.llm import LLMBackend
    from .corpus import Chunk
    from .index import KnowledgeIndex
    from .offline import MotiveModel, Signals
    from .validation import Checked

log = logging.getLogger(__name__)

#: Inputs prepared together by the offline batch path (the LLM path uses its concurrency).
_BLOCK = 64


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
    chunks: list[Chunk]
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
        self.backend: BackendName = settings.resolved_backend()
        self.index = index or KnowledgeIndex.from_settings(settings)
        if self.backend == "llm" and llm is None:
            from .backends.llm import LLMBackend

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
        settings = load_settings(settings, **overrides)
        llm = None
        if settings.resolved_backend() == "llm":
            from .backends.llm import LLMBackend

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
            self._model = MotiveModel.load_or_train(
                folder, self.index.exemplars, self.settings.offline_sentence_encoder)
        return self._model

    def first_run_work(self) -> list[str]:
        """What the first analysis will have to do before it can answer (empty once the
        index folder holds everything), so a caller can say so instead of going quiet."""
        from .offline import MotiveModel

        work = [] if self.index.is_current() else ["build the guidance and exemplar index"]
        if self._model is None and not MotiveModel.cache_path(
                self.settings.index_dir / "models", self.index.exemplars,
                self.settings.offline_sentence_encoder).exists():
            work.append("train the offline model")
        return work

    def warm_up(self) -> None:
        """Build or open the index and the trained model now rather than on first use."""
        self.index.ensure()
        _ = self.model

    def _guard(self, raw: Any) -> tuple[ComplaintInput, int]:
        """Validate the input and mask personal data (before anything leaves the process).

        A batch reader may pass an ``InputError`` in an input's place to keep a line it
        could not read; it becomes that input's outcome."""
        if isinstance(raw, InputError):
            raise raw
        complaint = to_input(raw, max_chars=self.settings.max_chars,
                             truncate=self.settings.truncate,
                             reply_language=self.settings.reply_language)
        if not self.settings.redact_pii:
            return complaint, 0
        masked = redact(complaint.text)
        if masked.count:
            complaint = complaint.model_copy(update={
                "text": masked.text,
                "turns": [t.model_copy(update={"text": redact(t.text).text})
                          for t in complaint.turns]})
        return complaint, masked.count

    def _prepare_many(self, raws: Sequence[Any], *,
                      with_messages: bool) -> list[_Prepared | ComplaintMotiveError]:
        """Everything before the backend, for a batch at once: one embedding call, one
        Chroma query per collection and one classifier pass serve every input. An input
        that fails its guards comes back as its error, in its place."""
        from .offline import collect_signals
        from .prompts import build_messages
        from .retrieval import candidate_pool, steer

        started = time.perf_counter()
        guarded: list[tuple[ComplaintInput, int] | ComplaintMotiveError] = []
        for raw in raws:
            try:
                guarded.append(self._guard(raw))
            except ComplaintMotiveError as error:
                guarded.append(error)
        valid = [g for g in guarded if not isinstance(g, ComplaintMotiveError)]
        texts = [complaint.text for complaint, _ in valid]
        vectors = self.index.embed(texts)
        neighbours = self.index.similar_exemplars_many(vectors, 8)
        pools = self.index.search_many(vectors, candidate_pool(self.index, self.settings.top_k))
        scores = self.model.scores_many(texts)
        prepared: list[_Prepared | ComplaintMotiveError] = []
        position = 0
        for item in guarded:
            if isinstance(item, ComplaintMotiveError):
                prepared.append(item)
                continue
            complaint, redactions = item
            signals = collect_signals(complaint.text, scores[position], neighbours[position],
                                      unreadable=complaint.unreadable,
                                      channel=complaint.channel)
            chunks = steer(pools[position], self.settings.top_k, signals.hint_motives())
            messages = None
            if with_messages and self.llm is not None:
                messages = build_messages(complaint, chunks,
                                          neighbours[position][:self.settings.exemplars_k],
                                          schema_in_prompt=self.llm.schema_in_prompt)
            prepared.append(_Prepared(complaint, signals, chunks, messages,
                                      injection_phrases(complaint.text), redactions, started))
            position += 1
        return prepared

    def _prepare(self, raw: Any, *, with_messages: bool) -> _Prepared:
        prepared = self._prepare_many([raw], with_messages=with_messages)[0]
        if isinstance(prepared, ComplaintMotiveError):
            raise prepared
        return prepared

    def _validator(self, prepared: _Prepared) -> Callable[[ModelAnswer], Checked]:
        from .validation import check_answer

        retrieved = {c.chunk_id for c in prepared.chunks}
        signals = prepared.signals
        return lambda answer: check_answer(
            answer, prepared.complaint.text, retrieved,
            max_promised_amount=self.settings.max_promised_amount,
            injection=prepared.injection, risk_cues=signals.risk_cues,
            source_cues=signals.source_cues)

    def _offline(self, prepared: _Prepared, *, degraded_reason: str | None = None,
                 usage: Usage | None = None, attempts: int = 0,
                 answer: ModelAnswer | None = None) -> MotiveAnalysis:
        from .offline import offline_answers

        if answer is None:
            answer = offline_answers([(prepared.complaint, prepared.signals, prepared.chunks)],
                                     self.model)[0]
        checked = self._validator(prepared)(answer)
        if checked.problems:  # the offline answer is built to pass; a failure here is a bug
            raise OutputValidationError(
                f"offline answer failed validation: {checked.problems[0]}",
                problems=checked.problems)
        warnings = [f"degraded: {degraded_reason}"] if degraded_reason else []
        return self._finish(prepared, checked, backend="offline", usage=usage or Usage(),
                            attempts=attempts, degraded_reason=degraded_reason,
                            warnings=warnings)

    def _finish(self, prepared: _Prepared, checked: Checked, *,
                backend: BackendName, usage: Usage, attempts: int,
                degraded_reason: str | None = None,
                warnings: list[str] | None = None) -> MotiveAnalysis:
        from .enrich import build_analysis
        from .prompts import prompt_version
        from .taxonomy import load_taxonomy

        warnings = [*prepared.complaint.warnings, *(warnings or []),
                    *(f"repaired: {repair}" for repair in checked.repairs)]
        if prepared.injection:
            warnings.append("the complaint contains instructions aimed at the model; "
                            "they were treated as data")
        meta = Meta(
            backend=backend,
            model=self.llm.model_name if backend == "llm" and self.llm
            else f"offline/{self.model.version}",
            prompt_version=prompt_version(), corpus_version=self.index.versions()["guidance"],
            taxonomy_version=load_taxonomy().version,
            latency_ms=round((time.perf_counter() - prepared.started) * 1000, 2),
            attempts=attempts or 1, usage=usage, cost_usd=self._cost(usage),
            degraded=degraded_reason is not None, degraded_reason=degraded_reason,
            warnings=warnings, redactions=prepared.redactions)
        result = build_analysis(checked.answer, complaint=prepared.complaint,
                                signals=prepared.signals, chunks=prepared.chunks, meta=meta,
                                settings=self.settings, injection=prepared.injection,
                                weakened=checked.weakened)
        # Structured fields for log pipelines; labels and numbers only, never the text.
        log.info("analysed", extra={
            "event": "analysed", "backend": backend, "motive": result.primary_motive.id,
            "stage": result.stage.id if result.stage else None,
            "level": result.primary_motive.level,
            "risk": result.risk.level, "latency_ms": meta.latency_ms,
            "tokens": usage.total_tokens, "degraded": meta.degraded,
            "redactions": meta.redactions, "repairs": len(checked.repairs)})
        return result

    def _cost(self, usage: Usage) -> float | None:
        price = self.settings.price()
        if price is None or not usage.total_tokens:
            return None
        return round((usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1e6, 6)

    def _fallback(self, fallback: Fallback | None) -> Fallback:
        return fallback or self.settings.fallback

    def _degrade(self, prepared: _Prepared, error: ComplaintMotiveError,
                 fallback: Fallback | None) -> MotiveAnalysis:
        # Every attempt is accounted for, failed ones included (evaluation sums these).
        error.details.setdefault(
            "latency_ms", round((time.perf_counter() - prepared.started) * 1000, 2))
        if "usage" in error.details:
            error.details.setdefault("cost_usd", self._cost(Usage(**error.details["usage"])))
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
        return self._finish(prepared, reply.checked, backend="llm", usage=reply.usage,
                            attempts=reply.attempts)

    async def aanalyze(self, complaint: Any, *, fallback: Fallback | None = None,
                       config: RunnableConfig | None = None) -> MotiveAnalysis:
        """``analyze`` for asyncio; local work runs in a thread so the loop keeps moving."""
        prepared = await asyncio.to_thread(self._prepare, complaint, with_messages=True)
        if self.llm is None or prepared.messages is None:
            return await asyncio.to_thread(self._offline, prepared)
        return await self._aanswer(prepared, fallback, config)

    async def _aanswer(self, prepared: _Prepared, fallback: Fallback | None,
                       config: RunnableConfig | None = None) -> MotiveAnalysis:
        assert self.llm is not None and prepared.messages is not None
        try:
            reply = await self.llm.aanswer(prepared.messages, self._validator(prepared),
                                           config)
        except (BackendError, OutputValidationError) as error:
            return await asyncio.to_thread(self._degrade, prepared, error, fallback)
        return self._finish(prepared, reply.checked, backend="llm", usage=reply.usage,
                            attempts=reply.attempts)

    async def aiter_outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                             fallback: Fallback | None = None) -> AsyncIterator[Outcome]:
        """Yield one ``Outcome`` per input, in input order, each as soon as it and every
        input before it are done (so a caller can write results as they come).

        Items may be complaints or ``{"id": …, "text": …}`` records; a failure is that
        input's error value, never an exception that loses the others. Inputs are prepared
        in blocks (see ``_prepare_many``), one block at a time, while earlier blocks wait
        on the model; ``concurrency`` bounds the LLM calls in flight.
        """
        if isinstance(items, str | bytes):
            raise InputError("a batch is a list of complaints, not one string")
        unpacked = [_unpack(item) for item in items]
        await asyncio.to_thread(self.warm_up)
        gate = asyncio.Semaphore(max(1, concurrency))
        size = _BLOCK if self.llm is None else max(1, concurrency)
        previous: asyncio.Future[list[Any]] | None = None
        tasks: list[asyncio.Future[Outcome] | None] = []
        for start in range(0, len(unpacked), size):
            block = unpacked[start:start + size]
            previous = asyncio.ensure_future(self._ablock(block, previous))
            for offset, (item_id, _) in enumerate(block):
                tasks.append(asyncio.ensure_future(self._acomplete(
                    previous, offset, start + offset, item_id, gate, fallback)))
        try:
            for position, task in enumerate(tasks):
                assert task is not None
                outcome = await task
                # Let go of what was handed over: a long batch then streams, rather than
                # keeping every result until the last one is yielded.
                tasks[position] = None
                yield outcome
        finally:
            for task in tasks:
                if task is not None:
                    task.cancel()

    async def _ablock(self, block: list[tuple[str | None, Any]],
                      previous: asyncio.Future[list[Any]] | None) -> list[Any]:
        """Prepare a block (offline: analyse it) in a thread, after the block before it."""
        if previous is not None:
            await asyncio.wait([previous])
        payloads = [payload for _, payload in block]
        try:
            if self.llm is None:
                return await asyncio.to_thread(self._offline_block, payloads)
            return await asyncio.to_thread(self._prepare_many, payloads, with_messages=True)
        except Exception as error:  # the whole block failed (e.g. the index is unreadable)
            return [error] * len(block)

    def _offline_block(self, payloads: list[Any]) -> list[MotiveAnalysis | Exception]:
        from .offline import offline_answers

        prepared = self._prepare_many(payloads, with_messages=False)
        ready = [p for p in prepared if not isinstance(p, Exception)]
        answers = iter(offline_answers([(p.complaint, p.signals, p.chunks) for p in ready],
                                       self.model))
        done: list[MotiveAnalysis | Exception] = []
        for item in prepared:
            try:
                if isinstance(item, Exception):
                    raise item
                done.append(self._offline(item, answer=next(answers)))
            except Exception as error:
                done.append(error)
        return done

    async def _acomplete(self, block: asyncio.Future[list[Any]], offset: int, index: int,
                         item_id: str | None, gate: asyncio.Semaphore,
                         fallback: Fallback | None) -> Outcome:
        ready = (await block)[offset]
        try:
            if isinstance(ready, Exception):
                raise ready
            if isinstance(ready, MotiveAnalysis):
                return Outcome(index=index, id=item_id, result=ready)
            async with gate:
                result = await self._aanswer(ready, fallback)
        except Exception as error:
            return _failed(index, item_id, error)
        return Outcome(index=index, id=item_id, result=result)

    async def aanalyze_many(self, items: Iterable[Any], *, concurrency: int = 8,
                            fallback: Fallback | None = None) -> list[Outcome]:
        """One ``Outcome`` per input, in input order; a failure is that input's error value."""
        return [outcome async for outcome in self.aiter_outcomes(
            items, concurrency=concurrency, fallback=fallback)]

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
    """An input's id, if it is a record, and what ``_guard`` takes: the record itself, or the
    ``InputError`` a batch reader put in its text to keep an unreadable line's place."""
    if isinstance(item, dict) and ("text" in item or "turns" in item):
        raw_id = item.get("id")
        text = item.get("text")
        return (None if raw_id is None else str(raw_id)), (
            text if isinstance(text, InputError) else item)
    return None, item


def _failed(index: int, item_id: str | None, error: Exception) -> Outcome:
    """The outcome of an input that failed: typed errors as they are; anything else (a bug)
    logged, and reported without its message, which could quote the complaint."""
    if isinstance(error, ComplaintMotiveError):
        return Outcome(index=index, id=item_id, error=error.to_dict())
    # Where it happened, not the message or a full traceback: either could quote the text.
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    log.error("unexpected %s on input %d at %s:%s in %s", type(error).__name__, index,
              *(frame.filename, frame.lineno, frame.name) if frame else ("?", "?", "?"))
    return Outcome(index=index, id=item_id, error={
        "kind": "internal", "type": type(error).__name__,
        "message": "unexpected internal error; see the log"})
