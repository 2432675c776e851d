"""The analysis of one complaint, step by step, each step handing its output forward:

    guard (``Guarded``) → signals and retrieval (``Prepared``) → backend (``Reply``) →
    validation (inside the backend, ``Prepared.check``) → result (``MotiveAnalysis``)

Nothing reaches back: the version stamps travel with ``Prepared`` (taken from the prompts,
index and taxonomy that prepared it) and the model's name with the ``Reply``, so the result
is assembled from what it was handed. ``Pipeline`` runs the steps for a block of inputs at
once (one embedding call, one Chroma query per collection and one classifier pass serve
every input) and answers with the primary backend, then, where the caller allows it, with
the fallback backend ("a second backend"), marked degraded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig

from ..errors import BackendError, ComplaintMotiveError, OutputValidationError
from .clauses import clauses_of
from .injection import detect_injection, without_instructions
from .inputs import to_input
from .privacy import redact
from .schema import Meta, MotiveAnalysis, Usage
from .tracing import atraced, traced
from .types import Backend, Guarded, Listener, Prepared, Reply, Versions

if TYPE_CHECKING:
    from ..knowledge.index import KnowledgeIndex
    from ..settings import Settings
    from .classifier import MotiveModel

log = logging.getLogger(__name__)



def guard(raw: Any, settings: Settings) -> Guarded:
    """Validate the input and mask personal data; an ``InputError`` says what is wrong."""
    complaint = to_input(raw, max_chars=settings.max_chars, truncate=settings.truncate,
                         reply_language=settings.reply_language)
    redactions = 0
    if settings.redact_pii:
        masked = redact(complaint.text)
        redactions = masked.count
        if masked.count:
            complaint = complaint.model_copy(update={
                "text": masked.text,
                "turns": [t.model_copy(update={"text": redact(t.text).text})
                          for t in complaint.turns]})
    return Guarded(complaint, redactions, detect_injection(complaint))


class Pipeline:
    """The steps, over one index and one trained offline model (loaded on first use)."""

    def __init__(self, settings: Settings, index: KnowledgeIndex) -> None:
        self.settings, self.index = settings, index
        self._model: MotiveModel | None = None

    @property
    def model(self) -> MotiveModel:
        """The offline classifier behind the signals (and the offline backend)."""
        if self._model is None:
            from .classifier import MotiveModel

            self.index.ensure()
            self._model = MotiveModel.load_or_train(
                self.settings.index_dir / "models", self.index.exemplars,
                self.settings.offline_sentence_encoder)
        return self._model

    def first_run_work(self) -> list[str]:
        """What the first preparation will build or train (empty once the index folder
        holds everything)."""
        from .classifier import MotiveModel

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

    def versions(self) -> Versions:
        from ..knowledge.taxonomy import load_taxonomy
        from .prompts import prompt_version

        return Versions(prompt=prompt_version(), corpus=self.index.versions()["guidance"],
                        taxonomy=load_taxonomy().version)

    def prepare_many(self, raws: Sequence[Any], *, k: int | None = None,
                     motives: Sequence[str] = ()) -> list[Prepared | ComplaintMotiveError]:
        """Guard, signals and retrieval for a block of inputs; an input that fails its
        guards comes back as its error, in its place. ``k`` (default ``top_k``) chunks are
        retrieved, steered by ``motives`` when given, else by the classifier."""
        from .signals import collect_signals
        from .steering import candidate_pool, steer, steering_motives

        started = time.perf_counter()
        k = k or self.settings.top_k
        guarded: list[Guarded | ComplaintMotiveError] = []
        for raw in raws:
            try:
                guarded.append(guard(raw, self.settings))
            except ComplaintMotiveError as error:
                guarded.append(error)
        valid = [g for g in guarded if isinstance(g, Guarded)]
        # The offline analyzer reads the text without the sentences that instruct the model,
        # so an injection cannot move its labels (nor, through it, the LLM's level).
        texts = [without_instructions(g.complaint.text) if g.injection else g.complaint.text
                 for g in valid]
        vectors = self.index.embed(texts)
        neighbours = iter(self.index.similar_exemplars_many(vectors, 8))
        pools = iter(self.index.search_many(vectors, candidate_pool(self.index, k)))
        scores = iter(self.model.scores_many(texts))
        versions = self.versions() if valid else None
        prepared: list[Prepared | ComplaintMotiveError] = []
        read = iter(texts)
        for item in guarded:
            if not isinstance(item, Guarded):
                prepared.append(item)
                continue
            complaint = item.complaint
            signals = collect_signals(next(read), next(scores), next(neighbours),
                                      unreadable=complaint.unreadable,
                                      channel=complaint.channel)
            chunks = steer(next(pools), k, list(motives) or steering_motives(signals))
            assert versions is not None
            prepared.append(Prepared(complaint, clauses_of(complaint), item.redactions,
                                     item.injection, signals,
                                     chunks, versions, started,
                                     self.settings.max_promised_amount))
        return prepared

    def prepare(self, raw: Any, **options: Any) -> Prepared:
        """``prepare_many`` for one input; its error is raised."""
        prepared = self.prepare_many([raw], **options)[0]
        if isinstance(prepared, ComplaintMotiveError):
            raise prepared
        return prepared

    # -- backend, with the fallback as a second backend -----------------------------------

    def answer(self, prepared: Prepared, primary: Backend, second: Backend | None,
               config: RunnableConfig | None = None, *,
               listener: Listener | None = None) -> MotiveAnalysis:
        """The primary backend's result; on a backend or validation failure, the second
        backend's (when given), marked degraded. ``listener`` follows the primary's
        answer as it is written."""
        try:
            reply = primary.answer(prepared, config, listener=listener)
        except (BackendError, OutputValidationError) as error:
            return self.recover(prepared, error, second, config)
        return self.finish(prepared, reply)

    def recover(self, prepared: Prepared, error: ComplaintMotiveError,
                second: Backend | None, config: RunnableConfig | None = None,
                ) -> MotiveAnalysis:
        """After the primary backend failed: ``error`` raised (with what it cost), or the
        second backend's result, marked degraded."""
        self.account(prepared, error)
        if second is None:
            raise error
        log.warning("backend failed (%s); answering with %s", error.kind, second.name)
        reply = traced(config, f"fallback:{second.name}", {"reason": error.kind},
                       lambda child: second.answer(prepared, child))
        return self.degraded(prepared, reply, error)

    async def aanswer(self, prepared: Prepared, primary: Backend, second: Backend | None,
                      config: RunnableConfig | None = None, *,
                      listener: Listener | None = None) -> MotiveAnalysis:
        """``answer`` for asyncio."""
        try:
            reply = await primary.aanswer(prepared, config, listener=listener)
        except (BackendError, OutputValidationError) as error:
            self.account(prepared, error)
            if second is None:
                raise
            log.warning("backend failed (%s); answering with %s", error.kind, second.name)
            reply = await atraced(config, f"fallback:{second.name}", {"reason": error.kind},
                                  lambda child: second.aanswer(prepared, child))
            return self.degraded(prepared, reply, error)
        return self.finish(prepared, reply)

    def degraded(self, prepared: Prepared, reply: Reply,
                 error: ComplaintMotiveError) -> MotiveAnalysis:
        """The second backend's answer, carrying what the failed calls cost."""
        reply = replace(reply, usage=Usage(**error.details.get("usage", {})),
                        attempts=error.details.get("attempts", 0))
        return self.finish(prepared, reply, degraded_reason=f"{error.kind}: {error.message}")

    def account(self, prepared: Prepared, error: ComplaintMotiveError) -> None:
        """Every attempt is accounted for, failed ones included (evaluation sums these)."""
        error.details.setdefault("latency_ms", prepared.elapsed_ms())
        if "usage" in error.details:
            error.details.setdefault("cost_usd", self.cost(Usage(**error.details["usage"])))

    # -- result ---------------------------------------------------------------------------

    def finish(self, prepared: Prepared, reply: Reply, *,
               degraded_reason: str | None = None) -> MotiveAnalysis:
        """The result step: enrichment from the taxonomy and the run's metadata."""
        from .enrich import build_analysis

        checked = reply.checked
        warnings = [*prepared.complaint.warnings,
                    *([f"degraded: {degraded_reason}"] if degraded_reason else []),
                    *(f"repaired: {repair}" for repair in checked.repairs)]
        if prepared.injection:
            warnings.append("the complaint contains instructions aimed at the model; "
                            "they were treated as data")
        versions = prepared.versions
        meta = Meta(
            backend=reply.backend, model=reply.model, prompt_version=versions.prompt,
            corpus_version=versions.corpus, taxonomy_version=versions.taxonomy,
            latency_ms=prepared.elapsed_ms(), attempts=reply.attempts or 1,
            usage=reply.usage, cost_usd=self.cost(reply.usage),
            degraded=degraded_reason is not None, degraded_reason=degraded_reason,
            warnings=warnings, redactions=prepared.redactions)
        result = build_analysis(checked.answer, complaint=prepared.complaint,
                                clauses=prepared.clauses, signals=prepared.signals,
                                chunks=prepared.chunks, meta=meta,
                                settings=self.settings, injection=prepared.injection,
                                weakened=checked.weakened)
        # Structured fields for log pipelines; labels and numbers only, never the text.
        log.info("analysed", extra={
            "event": "analysed", "backend": reply.backend, "motive": result.primary_motive.id,
            "stage": result.stage.id if result.stage else None,
            "level": result.primary_motive.level,
            "risk": result.risk.level, "latency_ms": meta.latency_ms,
            "tokens": reply.usage.total_tokens, "degraded": meta.degraded,
            "redactions": meta.redactions, "repairs": len(checked.repairs)})
        return result

    def cost(self, usage: Usage) -> float | None:
        price = self.settings.price()
        if price is None or not usage.total_tokens:
            return None
        return round((usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1e6, 6)


