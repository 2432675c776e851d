"""``evaluate``: a labelled set through the analyzer, each item's prediction kept as it
comes (an interrupted run resumes), then the report written.

A set is any table ``readers.read_rows`` reads (JSONL, CSV, Parquet, a DataFrame, dicts).
Columns the labelled schema does not score are kept, untouched, under each prediction's
``extra``; they can slice the metrics (``by``), as can ``lang`` (detected when absent).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..knowledge.exemplars import LabelledComplaint, LineProblem
from ..readers import read_jsonl, read_rows
from .compare import compare_predictions, load_report
from .datasets import Dataset, LabelledRow, read_labelled_rows
from .markdown import write_report
from .metrics import build_report
from .models import EvaluationReport, FieldMap, Prediction
from .plots import warm_up as warm_up_plots

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from ..analyzer import MotiveAnalyzer, Outcome

    #: Where outcomes come from: ``analyzer.aiter_outcomes`` or the Batch API's.
    OutcomeSource = Callable[..., AsyncIterator[Outcome]]

log = logging.getLogger(__name__)



def _prediction(row: LabelledRow, outcome: Outcome) -> Prediction:
    item = row.item
    base = dict(id=item.id, line=row.line, lang=row.lang, extra=row.extra, text=item.text,
                gold_motive=item.motive.value,
                gold_stage=item.stage.value if item.stage else None,
                alt_motives=[a.value for a in item.alt_motives],
                gold_risk_flags=[f.value for f in item.risk_flags],
                gold_needs=[n.value for n in item.needs],
                gold_legitimacy=item.legitimacy.value if item.legitimacy else None)
    result = outcome.result
    if result is None:
        # A failed item still cost its attempts: the error carries their usage and time.
        details = (outcome.error or {}).get("details", {})
        usage = details.get("usage", {})
        return Prediction(**base, error=outcome.error, latency_ms=details.get("latency_ms"),
                          input_tokens=usage.get("input_tokens", 0),
                          output_tokens=usage.get("output_tokens", 0),
                          cost_usd=details.get("cost_usd"))
    evidence = result.primary_motive.evidence
    return Prediction(
        **base, motive=result.primary_motive.id,
        stage=result.stage.id if result.stage else None,
        secondary=[m.id for m in result.secondary_motives],
        confidence=result.primary_motive.confidence, level=result.primary_motive.level,
        stage_confidence=result.stage.confidence if result.stage else None,
        stage_level=result.stage.level if result.stage else None,
        risk_flags=result.risk.flags, cited=len(result.citations),
        needs=[n.id for n in result.needs.items], legitimacy=result.legitimacy.id,
        # Evidence is the complaint's own clauses by construction: found where it could be
        # placed in the text given (a clause that is all masked data cannot).
        evidence_found=bool(evidence) and all(e.start is not None or e.masked
                                              for e in evidence),
        degraded=result.meta.degraded, degraded_reason=result.meta.degraded_reason,
        latency_ms=result.meta.latency_ms, input_tokens=result.meta.usage.input_tokens,
        output_tokens=result.meta.usage.output_tokens, cost_usd=result.meta.cost_usd)



@dataclass
class EvaluationPlan:
    """Everything an evaluation needs, read and checked before any complaint is analysed:
    a bad argument fails here, at once, not after a paid run."""

    dataset: str
    rows: list[LabelledRow]
    skipped: list[LineProblem]
    rows_read: int
    report_dir: Path | None
    done: dict[str, Prediction]
    resume: bool
    by: tuple[str, ...]
    second_annotator: str | None
    compare: Path | None

    @property
    def todo(self) -> list[LabelledRow]:
        return [row for row in self.rows if row.item.id not in self.done]


def plan_evaluation(dataset: Dataset, *, report_dir: Path | None = None,
                    limit: int | None = None, resume: bool = False,
                    fields: FieldMap | None = None, by: Sequence[str] = (),
                    second_annotator: str | None = None, compare: Path | None = None,
                    encoding: str | None = None, format: str | None = None) -> EvaluationPlan:
    """Read the set and check every option against it; ``InputError`` says what is wrong.

    A ``by`` or ``second_annotator`` column no row has, a ``compare`` folder that holds no
    report, or a ``resume`` whose kept predictions cannot continue this set is refused."""
    if compare is not None:
        load_report(compare)
    rows, skipped, read = _labelled_source(dataset, fields, encoding, format)
    rows = rows[:limit] if limit else rows
    columns = {name for row in rows for name, value in row.extra.items() if value is not None}
    for name in (*by, *([second_annotator] if second_annotator else [])):
        if name != "lang" and rows and name not in columns:
            raise InputError(f"no row has a {name!r} column; columns beyond the labels: "
                             f"{sorted(columns)[:20] or 'none'}")
    done: dict[str, Prediction] = {}
    if resume and report_dir is not None and (report_dir / "predictions.jsonl").exists():
        done = read_kept_predictions(report_dir / "predictions.jsonl")
        unknown = sorted(set(done) - {row.item.id for row in rows})
        if unknown:
            raise InputError(f"{report_dir}/predictions.jsonl holds ids this set does not "
                             f"have ({unknown[:3]}): it is another run's; resume with the "
                             "same set, or choose another --report")
    return EvaluationPlan(
        dataset=str(dataset) if isinstance(dataset, str | Path) else "<in memory>",
        rows=rows, skipped=skipped, rows_read=read, report_dir=report_dir, done=done,
        resume=resume, by=tuple(by), second_annotator=second_annotator, compare=compare)


def _labelled_source(dataset: Dataset, fields: FieldMap | None, encoding: str | None,
                     format: str | None) -> tuple[list[LabelledRow], list[LineProblem], int]:
    if isinstance(dataset, str | Path):
        return read_labelled_rows(read_rows(dataset, format=format, encoding=encoding), fields)
    if not hasattr(dataset, "columns"):
        dataset = [d.model_dump(mode="json", exclude_none=True)
                   if isinstance(d, LabelledComplaint) else d for d in dataset]
    rows, problems, read = read_labelled_rows(read_rows(dataset), fields)
    # In memory there is no line to point at: a repeated id is the caller's error.
    repeated = [p for p in problems if p.message.startswith("duplicate id")]
    if repeated:
        ids = sorted({p.message.split("'")[1] for p in repeated})
        raise InputError(f"each item needs its own id; repeated: {ids[:5]}")
    return rows, problems, read


def evaluate(dataset: Dataset, analyzer: MotiveAnalyzer, *, report_dir: Path | None = None,
             concurrency: int = 8, limit: int | None = None, resume: bool = False,
             progress_bar: bool = False, fields: FieldMap | None = None,
             by: Sequence[str] = (), second_annotator: str | None = None,
             compare: Path | None = None, encoding: str | None = None,
             format: str | None = None,
             source: OutcomeSource | None = None) -> EvaluationReport:
    """Run ``analyzer`` over a labelled set and build the report (written to ``report_dir``
    when given: ``metrics.json``, ``predictions.jsonl``, ``report.md``, ``report.html`` and
    PNG plots).

    ``dataset`` is a JSONL, CSV or Parquet path, a pandas DataFrame, or an iterable of dicts
    or ``LabelledComplaint``; ``fields`` maps other column names; ``by`` slices the metrics
    by columns (``lang`` is always there); ``second_annotator`` names a column with a second
    person's motive (Cohen's kappa); ``compare`` is an earlier report folder. ``source``
    replaces ``analyzer.aiter_outcomes`` (e.g. ``BatchRun(…).aiter_outcomes``).

    >>> report = evaluate(Path("set.csv"), analyzer, by=["channel"])  # doctest: +SKIP
    >>> report.motive.accuracy, report.motive.accuracy_ci           # doctest: +SKIP
    (0.78, [0.71, 0.84])
    """
    return asyncio.run(aevaluate(dataset, analyzer, report_dir=report_dir,
                                 concurrency=concurrency, limit=limit, resume=resume,
                                 progress_bar=progress_bar, fields=fields, by=by,
                                 second_annotator=second_annotator, compare=compare,
                                 encoding=encoding, format=format, source=source))


async def aevaluate(dataset: Dataset, analyzer: MotiveAnalyzer, *,
                    report_dir: Path | None = None, concurrency: int = 8,
                    limit: int | None = None, resume: bool = False,
                    progress_bar: bool = False, fields: FieldMap | None = None,
                    by: Sequence[str] = (), second_annotator: str | None = None,
                    compare: Path | None = None, encoding: str | None = None,
                    format: str | None = None,
                    source: OutcomeSource | None = None) -> EvaluationReport:
    """``evaluate`` for a running event loop."""
    plan = plan_evaluation(dataset, report_dir=report_dir, limit=limit, resume=resume,
                           fields=fields, by=by, second_annotator=second_annotator,
                           compare=compare, encoding=encoding, format=format)
    return await arun_evaluation(plan, analyzer, concurrency=concurrency,
                                 progress_bar=progress_bar, source=source)


async def arun_evaluation(plan: EvaluationPlan, analyzer: MotiveAnalyzer, *,
                          concurrency: int = 8, progress_bar: bool = False,
                          source: OutcomeSource | None = None) -> EvaluationReport:
    """Analyse what ``plan`` has left to do (through ``source`` when given, else
    ``analyzer.aiter_outcomes``), then build (and write) the report."""
    from ..progress import progress

    started = time.perf_counter()
    report_dir = plan.report_dir
    done = dict(plan.done)
    todo = plan.todo
    predictions_path = report_dir / "predictions.jsonl" if report_dir else None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        if plan.done and predictions_path:
            _rewrite_kept(predictions_path, plan.done)
    sink = predictions_path.open("a" if plan.resume else "w", encoding="utf-8") \
        if predictions_path else None
    try:
        with progress(len(todo), "evaluating", disable=not progress_bar) as advance:
            outcomes = (source or analyzer.aiter_outcomes)(
                [row.item.as_input() for row in todo], concurrency=concurrency)
            position = 0
            async for outcome in outcomes:
                if position == 0 and report_dir is not None:
                    # Plotting needs matplotlib (about 0.4 s to import and warm up): load it while
                    # later inputs wait on the model, not while the first are prepared.
                    threading.Thread(target=warm_up_plots, daemon=True).start()
                row = todo[position]
                position += 1
                done[row.item.id] = prediction = _prediction(row, outcome)
                if sink:  # written as results come, so --resume can continue a cut run
                    sink.write(prediction.model_dump_json() + "\n")
                    sink.flush()
                advance()
    finally:
        if sink:
            sink.close()
    ordered = [done[row.item.id] for row in plan.rows]
    from ..analysis.prompts import prompt_version

    run = {"dataset": plan.dataset,
           "backend": analyzer.backend, "model": analyzer.settings.model
           if analyzer.backend == "llm" else "offline", "prompt_version": prompt_version(),
           "corpus_version": analyzer.index.versions()["guidance"],
           "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "wall_seconds": round(time.perf_counter() - started, 3),
           "concurrency": concurrency, "resumed": len(plan.rows) - len(todo)}
    report = build_report(ordered, plan.skipped, run, by=plan.by,
                          second_annotator=plan.second_annotator, rows_read=plan.rows_read)
    if plan.compare is not None:
        report.comparison = compare_predictions(
            plan.compare, load_report(plan.compare), (report.model_dump(mode="json"), ordered),
            after_name=report_dir.name if report_dir else "this run")
    if not report.scored:
        log.warning("nothing was scored: %d rows read, %d skipped, %d errors",
                    report.rows_read, len(report.skipped_lines), report.errors)
    if report_dir is not None:
        write_report(report, ordered, report_dir)
    return report


def read_kept_predictions(path: Path) -> dict[str, Prediction]:
    """The predictions an interrupted run wrote. A run cut off mid-line leaves a partial last
    line: it is dropped (that input runs again). A bad line elsewhere is an ``InputError``."""
    lines = list(read_jsonl(path, Prediction))
    kept: dict[str, Prediction] = {}
    for number, read in enumerate(lines, start=1):
        if read.item is None:
            if number < len(lines):
                raise InputError(f"{read.where} is not a prediction ({read.problem}); fix "
                                 "or remove it, or run without --resume")
            log.warning("%s: dropped a partial last line; that input runs again", path)
            break
        kept[read.item.id] = read.item
    return kept


def _rewrite_kept(path: Path, kept: dict[str, Prediction]) -> None:
    """Lines are appended next: rewrite what is kept (without a partial last line), so the
    first new line starts on its own."""
    with path.open("w", encoding="utf-8") as handle:
        for prediction in kept.values():
            handle.write(prediction.model_dump_json() + "\n")


