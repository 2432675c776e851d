"""Evaluation: a labelled set in; metrics, per-item predictions, a report and plots out.

Metrics come from scikit-learn. A prediction of one of an item's ``alt_motives`` (motives a
careful annotator would also accept) counts as correct, and the report says how many were
counted that way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .errors import InputError
from .exemplars import LabelledComplaint, LineProblem, read_labelled
from .plots import warm_up as warm_up_plots
from .plots import write_plots
from .taxonomy import NeedId, PrimaryMotiveId, RiskFlagId, StageId

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from .analyzer import MotiveAnalyzer, Outcome

    #: Where outcomes come from: ``analyzer.aiter_outcomes`` or the Batch API's.
    OutcomeSource = Callable[..., AsyncIterator[Outcome]]

log = logging.getLogger(__name__)

LEVELS = ("high", "medium", "low")
_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


class Prediction(BaseModel):
    """One line of ``predictions.jsonl``: the input, its gold labels and what came back."""

    id: str
    text: str
    gold_motive: str
    gold_stage: str | None
    alt_motives: list[str] = []
    motive: str | None = None
    stage: str | None = None
    secondary: list[str] = []
    confidence: float | None = None
    level: str | None = None
    stage_confidence: float | None = None
    stage_level: str | None = None
    risk_flags: list[str] = []
    gold_risk_flags: list[str] = []
    needs: list[str] = []
    gold_needs: list[str] = []
    legitimacy: str | None = None
    gold_legitimacy: str | None = None
    cited: int = 0
    evidence_found: bool | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    error: dict[str, Any] | None = None
    latency_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    @property
    def motive_correct(self) -> bool:
        return self.motive is not None and (self.motive == self.gold_motive
                                            or self.motive in self.alt_motives)


class ClassMetrics(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class LabelMetrics(BaseModel):
    accuracy: float
    macro_f1: float
    labels: list[str]
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]
    majority_baseline: float = Field(description="accuracy of always answering the most "
                                     "common gold label")


class CalibrationBucket(BaseModel):
    """Items whose motive confidence falls in ``[low, high)``, and how often they were right."""

    low: float
    high: float
    n: int
    mean_confidence: float
    accuracy: float


class LevelFigures(BaseModel):
    """How many items got a confidence level, and how often those were right."""

    n: int
    share: float
    accuracy: float
    stage_share: float
    stage_accuracy: float


class SetFigures(BaseModel):
    """Multi-label scores (micro-averaged) over the items annotated with gold labels."""

    n: int
    precision: float
    recall: float
    f1: float


class RecallFigures(BaseModel):
    """Gold flags found, over the items annotated with at least one: annotations list the
    flags present, not their absence, so precision cannot be measured."""

    n: int
    recall: float
    per_flag: dict[str, float]


class AccuracyFigures(BaseModel):
    n: int
    accuracy: float


class EvaluationReport(BaseModel):
    """``metrics.json``; the keys ``n``, ``errors``, ``motive.accuracy``, ``motive.macro_f1``,
    ``stage.accuracy`` and ``stage.macro_f1`` are stable."""

    n: int
    errors: int
    skipped_lines: list[LineProblem]
    motive: LabelMetrics | None
    stage: LabelMetrics | None
    counted_via_alt_motives: int
    secondary_hit_rate: float | None = Field(
        description="share of items with alt_motives where a secondary motive hits one")
    gold_in_secondary_when_missed: float | None = Field(
        description="share of items whose primary motive was wrong where the gold motive "
        "is among the secondary motives")
    calibration: list[CalibrationBucket]
    needs: SetFigures | None = Field(description="over items with gold needs")
    risk_flags: RecallFigures | None = Field(description="over items with gold risk flags")
    legitimacy: AccuracyFigures | None = Field(description="over items with gold legitimacy")
    levels: dict[str, LevelFigures]
    grounding: dict[str, float]
    errors_by_kind: dict[str, int]
    degraded: int
    degraded_by_reason: dict[str, int]
    latency_ms: dict[str, float]
    tokens: dict[str, int]
    cost_usd: float
    run: dict[str, Any]

    def summary(self) -> str:
        motive = f"{self.motive.accuracy:.3f} (F1 {self.motive.macro_f1:.3f}, majority " \
                 f"{self.motive.majority_baseline:.3f})" if self.motive else "n/a"
        stage = f"{self.stage.accuracy:.3f} (F1 {self.stage.macro_f1:.3f}, majority " \
                f"{self.stage.majority_baseline:.3f})" if self.stage else "n/a"
        return (f"n={self.n} errors={self.errors} degraded={self.degraded}\n"
                f"motive accuracy {motive}\nstage accuracy {stage}\n"
                f"latency p50 {self.latency_ms.get('p50', 0):.1f} ms, p95 "
                f"{self.latency_ms.get('p95', 0):.1f} ms; tokens {self.tokens['total']}; "
                f"cost ${self.cost_usd:.4f}")


def _prediction(item: LabelledComplaint, outcome: Outcome) -> Prediction:
    from .validation import quote_found

    base = dict(id=item.id, text=item.text, gold_motive=item.motive.value,
                gold_stage=item.stage.value if item.stage else None,
                alt_motives=[a.value for a in item.alt_motives],
                gold_risk_flags=[f.value for f in item.risk_flags],
                gold_needs=[n.value for n in item.needs],
                gold_legitimacy=item.legitimacy.value if item.legitimacy else None)
    result = outcome.result
    if result is None:
        return Prediction(**base, error=outcome.error)
    quotes = [e.quote for e in result.primary_motive.evidence]
    return Prediction(
        **base, motive=result.primary_motive.id,
        stage=result.stage.id if result.stage else None,
        secondary=[m.id for m in result.secondary_motives],
        confidence=result.primary_motive.confidence, level=result.primary_motive.level,
        stage_confidence=result.stage.confidence if result.stage else None,
        stage_level=result.stage.level if result.stage else None,
        risk_flags=result.risk.flags, cited=len(result.citations),
        needs=[n.id for n in result.needs.items], legitimacy=result.legitimacy.id,
        # Quotes are checked against the masked text the backend saw; masks do not occur
        # in the gold text, so a quote with a mask in it counts as found.
        evidence_found=bool(quotes) and all(quote_found(q, item.text) or "[" in q
                                            for q in quotes),
        degraded=result.meta.degraded, degraded_reason=result.meta.degraded_reason,
        latency_ms=result.meta.latency_ms, input_tokens=result.meta.usage.input_tokens,
        output_tokens=result.meta.usage.output_tokens, cost_usd=result.meta.cost_usd)


def _label_metrics(gold: list[str], predicted: list[str], order: Sequence[str]) -> LabelMetrics:
    """Metrics over the labels present, in the taxonomy's ``order`` (stages in the order a
    customer moves through them), then any label the taxonomy does not know."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.metrics import precision_recall_fscore_support as prfs

    present = set(gold) | set(predicted)
    labels = [label for label in order if label in present] + sorted(present - set(order))
    precision, recall, f1, support = prfs(gold, predicted, labels=labels, zero_division=0)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    with warnings.catch_warnings():  # one label alone is a fine 1×1 matrix: we pass labels
        warnings.filterwarnings("ignore", message="A single label was found")
        confusion = confusion_matrix(gold, predicted, labels=labels).tolist()
    return LabelMetrics(
        accuracy=round(float(accuracy_score(gold, predicted)), 4),
        macro_f1=round(float(f1_score(gold, predicted, labels=sorted(set(gold)),
                                      average="macro", zero_division=0)), 4),
        labels=labels,
        per_class={label: ClassMetrics(precision=round(float(p), 4), recall=round(float(r), 4),
                                       f1=round(float(f), 4), support=int(s))
                   for label, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                strict=True)},
        confusion=confusion,
        majority_baseline=round(majority, 4))


def _indicators(classes: Sequence[str], gold: list[list[str]],
                predicted: list[list[str]]) -> tuple[Any, Any]:
    """Label sets as 0/1 matrices over ``classes``, the shape scikit-learn's multi-label
    metrics take (results are validated, so a predicted id is always one of the classes)."""
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer(classes=list(classes))
    return binarizer.fit_transform(gold), binarizer.transform(predicted)


def _set_figures(answered: list[Prediction]) -> SetFigures | None:
    from sklearn.metrics import precision_recall_fscore_support as prfs

    annotated = [p for p in answered if p.gold_needs]
    if not annotated:
        return None
    gold, predicted = _indicators([n.value for n in NeedId], [p.gold_needs for p in annotated],
                                  [p.needs for p in annotated])
    precision, recall, f1, _ = prfs(gold, predicted, average="micro", zero_division=0)
    return SetFigures(n=len(annotated), precision=round(float(precision), 4),
                      recall=round(float(recall), 4), f1=round(float(f1), 4))


def _flag_recall(answered: list[Prediction]) -> RecallFigures | None:
    from sklearn.metrics import recall_score

    annotated = [p for p in answered if p.gold_risk_flags]
    if not annotated:
        return None
    flags = [f.value for f in RiskFlagId]
    gold, predicted = _indicators(flags, [p.gold_risk_flags for p in annotated],
                                  [p.risk_flags for p in annotated])
    per_flag = recall_score(gold, predicted, average=None, zero_division=0)
    return RecallFigures(
        n=len(annotated),
        recall=round(float(recall_score(gold, predicted, average="micro", zero_division=0)), 4),
        per_flag={flag: round(float(r), 4) for flag, r, support
                  in zip(flags, per_flag, gold.sum(axis=0), strict=True) if support})


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def build_report(predictions: Sequence[Prediction], skipped: list[LineProblem],
                 run: dict[str, Any]) -> EvaluationReport:
    answered = [p for p in predictions if p.error is None]
    via_alt = sum(1 for p in answered if p.motive != p.gold_motive and p.motive_correct)
    # With an accepted alternative, the gold label becomes the prediction for the metrics.
    motive = _label_metrics([(p.motive or "") if p.motive_correct else p.gold_motive
                             for p in answered],
                            [p.motive or "" for p in answered],
                            [m.value for m in PrimaryMotiveId]) if answered else None
    staged = [p for p in answered if p.gold_stage]
    stage = _label_metrics([p.gold_stage or "" for p in staged],
                           [p.stage or "" for p in staged],
                           [s.value for s in StageId]) if staged else None
    with_alts = [p for p in answered if p.alt_motives]
    missed = [p for p in answered if not p.motive_correct]
    judged = [p for p in answered if p.gold_legitimacy]
    calibration = []
    for low, high in zip(_BUCKETS, _BUCKETS[1:], strict=False):
        bucket = [p for p in answered if p.confidence is not None and low <= p.confidence < high]
        if bucket:
            calibration.append(CalibrationBucket(
                low=low, high=min(high, 1.0), n=len(bucket),
                mean_confidence=round(statistics.fmean(p.confidence or 0 for p in bucket), 4),
                accuracy=round(sum(p.motive_correct for p in bucket) / len(bucket), 4)))
    levels = {}
    for level in LEVELS:
        chosen = [p for p in answered if p.level == level]
        staged_level = [p for p in staged if p.stage_level == level]
        levels[level] = LevelFigures(
            n=len(chosen), share=round(len(chosen) / len(answered), 4) if answered else 0.0,
            accuracy=round(sum(p.motive_correct for p in chosen) / len(chosen), 4)
            if chosen else 0.0,
            stage_share=round(len(staged_level) / len(staged), 4) if staged else 0.0,
            stage_accuracy=round(sum(p.stage == p.gold_stage for p in staged_level)
                                 / len(staged_level), 4) if staged_level else 0.0)
    latencies = [p.latency_ms for p in answered if p.latency_ms is not None]
    return EvaluationReport(
        n=len(predictions), errors=len(predictions) - len(answered), skipped_lines=skipped,
        motive=motive, stage=stage, counted_via_alt_motives=via_alt,
        secondary_hit_rate=round(sum(bool(set(p.secondary) & set(p.alt_motives))
                                     for p in with_alts) / len(with_alts), 4)
        if with_alts else None,
        gold_in_secondary_when_missed=round(sum(p.gold_motive in p.secondary for p in missed)
                                            / len(missed), 4) if missed else None,
        calibration=calibration, levels=levels, needs=_set_figures(answered),
        risk_flags=_flag_recall(answered),
        legitimacy=AccuracyFigures(
            n=len(judged), accuracy=round(sum(p.legitimacy == p.gold_legitimacy
                                              for p in judged) / len(judged), 4))
        if judged else None,
        grounding={
            "with_valid_citation": round(sum(p.cited > 0 for p in answered)
                                         / len(answered), 4) if answered else 0.0,
            "evidence_found": round(sum(bool(p.evidence_found) for p in answered)
                                    / len(answered), 4) if answered else 0.0},
        errors_by_kind=dict(Counter((p.error or {}).get("kind", "?") for p in predictions
                                    if p.error)),
        degraded=sum(p.degraded for p in answered),
        degraded_by_reason=dict(Counter((p.degraded_reason or "").split(":")[0]
                                        for p in answered if p.degraded)),
        latency_ms={"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        tokens={"input": sum(p.input_tokens for p in answered),
                "output": sum(p.output_tokens for p in answered),
                "total": sum(p.input_tokens + p.output_tokens for p in answered)},
        cost_usd=round(sum(p.cost_usd or 0.0 for p in answered), 6), run=run)


def evaluate(dataset: Path | Sequence[LabelledComplaint], analyzer: MotiveAnalyzer, *,
             report_dir: Path | None = None, concurrency: int = 8, limit: int | None = None,
             resume: bool = False, progress_bar: bool = False,
             source: OutcomeSource | None = None) -> EvaluationReport:
    """Run ``analyzer`` over a labelled set and build the report (written to ``report_dir``
    when given: ``metrics.json``, ``predictions.jsonl``, ``report.md`` and PNG plots).
    ``source`` replaces ``analyzer.aiter_outcomes`` (e.g. ``BatchRun(…).aiter_outcomes``).

    >>> report = evaluate(Path("corpus/eval/complaints.jsonl"), analyzer)  # doctest: +SKIP
    >>> report.motive.accuracy                                            # doctest: +SKIP
    0.78
    """
    return asyncio.run(aevaluate(dataset, analyzer, report_dir=report_dir,
                                 concurrency=concurrency, limit=limit, resume=resume,
                                 progress_bar=progress_bar, source=source))


async def aevaluate(dataset: Path | Sequence[LabelledComplaint], analyzer: MotiveAnalyzer, *,
                    report_dir: Path | None = None, concurrency: int = 8,
                    limit: int | None = None, resume: bool = False,
                    progress_bar: bool = False,
                    source: OutcomeSource | None = None) -> EvaluationReport:
    from .render import progress

    started = time.perf_counter()
    if isinstance(dataset, Path):
        items, skipped = read_labelled(dataset)
    else:
        items, skipped = list(dataset), []
        repeated = sorted(i for i, count in Counter(item.id for item in items).items()
                          if count > 1)
        if repeated:
            raise InputError(f"each item needs its own id; repeated: {repeated[:5]}")
    items = items[:limit] if limit else items
    done: dict[str, Prediction] = {}
    predictions_path = report_dir / "predictions.jsonl" if report_dir else None
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        if resume and predictions_path and predictions_path.exists():
            done = _kept_predictions(predictions_path)
    todo = [item for item in items if item.id not in done]
    sink = predictions_path.open("a" if resume else "w", encoding="utf-8") \
        if predictions_path else None
    try:
        with progress(len(todo), "evaluating", disable=not progress_bar) as advance:
            outcomes = (source or analyzer.aiter_outcomes)(
                [item.as_input() for item in todo], concurrency=concurrency)
            position = 0
            async for outcome in outcomes:
                if position == 0 and report_dir is not None:
                    # Plotting needs matplotlib (about 0.4 s to import and warm up): load it while
                    # later inputs wait on the model, not while the first are prepared.
                    threading.Thread(target=warm_up_plots, daemon=True).start()
                item = todo[position]
                position += 1
                done[item.id] = prediction = _prediction(item, outcome)
                if sink:  # written as results come, so --resume can continue a cut run
                    sink.write(prediction.model_dump_json() + "\n")
                    sink.flush()
                advance()
    finally:
        if sink:
            sink.close()
    ordered = [done[item.id] for item in items]
    from .prompts import prompt_version

    run = {"dataset": str(dataset) if isinstance(dataset, Path) else "<in memory>",
           "backend": analyzer.backend, "model": analyzer.settings.model
           if analyzer.backend == "llm" else "offline", "prompt_version": prompt_version(),
           "corpus_version": analyzer.index.versions()["guidance"],
           "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "wall_seconds": round(time.perf_counter() - started, 3),
           "concurrency": concurrency, "resumed": len(items) - len(todo)}
    report = build_report(ordered, skipped, run)
    if report_dir is not None:
        write_report(report, ordered, report_dir)
    return report


def _kept_predictions(path: Path) -> dict[str, Prediction]:
    """The predictions an interrupted run wrote. A run cut off mid-line leaves a partial last
    line: it is dropped (that input runs again). A bad line elsewhere is an error."""
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    kept: dict[str, Prediction] = {}
    dropped = False
    for number, line in enumerate(lines, start=1):
        try:
            prediction = Prediction.model_validate_json(line)
        except ValueError:
            if number < len(lines):  # the message would quote the line, so it is left out
                raise InputError(f"{path}: line {number} is not a prediction; fix or remove "
                                 "it, or run without --resume") from None
            log.warning("%s: dropped a partial last line; that input runs again", path)
            lines.pop()
            dropped = True
            break
        kept[prediction.id] = prediction
    if dropped or (text and not text.endswith("\n")):
        # Lines are appended next: rewrite what is kept so the first starts on its own line.
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return kept


def write_report(report: EvaluationReport, predictions: Sequence[Prediction],
                 folder: Path) -> None:
    """``metrics.json``, ``report.md`` and the plots (predictions are written as they come)."""
    (folder / "metrics.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    plots = write_plots(report, folder)
    (folder / "report.md").write_text(_markdown(report, plots, predictions), encoding="utf-8")


def _markdown(report: EvaluationReport, plots: list[str],
              predictions: Sequence[Prediction]) -> str:
    lines = [f"# Evaluation report\n\n`{report.run['dataset']}` · backend "
             f"`{report.run['backend']}` · model `{report.run['model']}` · prompt "
             f"`{report.run['prompt_version']}` · corpus `{report.run['corpus_version']}`\n",
             "| metric | value |", "| --- | --- |", f"| items | {report.n} |",
             f"| errors | {report.errors} |", f"| degraded | {report.degraded} |"]
    for name, metrics in (("motive", report.motive), ("stage", report.stage)):
        if metrics:
            lines += [f"| {name} accuracy | {metrics.accuracy:.3f} (majority baseline "
                      f"{metrics.majority_baseline:.3f}) |",
                      f"| {name} macro-F1 | {metrics.macro_f1:.3f} |"]
    lines += [f"| counted via alt_motives | {report.counted_via_alt_motives} |",
              f"| secondary-motive hit rate (items with alt_motives) | "
              f"{report.secondary_hit_rate} |",
              f"| gold motive among the secondaries when the primary missed | "
              f"{report.gold_in_secondary_when_missed} |",
              *([f"| needs, micro precision / recall (n={report.needs.n}) | "
                 f"{report.needs.precision:.2f} / {report.needs.recall:.2f} |"]
                if report.needs else []),
              *([f"| risk flags found (n={report.risk_flags.n}) | "
                 f"{report.risk_flags.recall:.2f} |"] if report.risk_flags else []),
              *([f"| legitimacy accuracy (n={report.legitimacy.n}) | "
                 f"{report.legitimacy.accuracy:.2f} |"] if report.legitimacy else []),
              f"| results with a valid citation | {report.grounding['with_valid_citation']} |",
              f"| evidence quotes found in the text | {report.grounding['evidence_found']} |",
              f"| latency p50 / p95 (ms) | {report.latency_ms['p50']} / "
              f"{report.latency_ms['p95']} |",
              f"| tokens / cost | {report.tokens['total']} / ${report.cost_usd:.4f} |", "",
              "## Confidence levels\n", "| level | share | motive accuracy | stage share | "
              "stage accuracy |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {level} | {v.share:.2f} | {v.accuracy:.2f} | {v.stage_share:.2f} | "
              f"{v.stage_accuracy:.2f} |" for level, v in report.levels.items()]
    if report.motive:
        lines += ["", "## Per motive\n", "| motive | precision | recall | F1 | support |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {label} | {m.precision:.2f} | {m.recall:.2f} | {m.f1:.2f} | "
                  f"{m.support} |" for label, m in report.motive.per_class.items()]
    lines += ["", *[f"![{p}]({p})" for p in plots]]
    if report.skipped_lines:
        lines += ["", "## Skipped lines\n"] + [f"- line {p.line}: {p.message}"
                                               for p in report.skipped_lines]
    wrong = [p for p in predictions if p.error is None and not p.motive_correct][:15]
    if wrong:
        lines += ["", "## Some misses\n", "| id | gold | predicted | text |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {p.id} | {p.gold_motive} | {p.motive} | {p.text[:40]} |" for p in wrong]
    return "\n".join(lines) + "\n"


def compare_reports(before: Path, after: Path) -> str:
    """A Markdown table of metric deltas and the inputs whose predictions changed."""
    def load(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        if not (folder / "metrics.json").is_file() or not (folder / "predictions.jsonl").is_file():
            raise InputError(f"{folder} is not an evaluation report (no metrics.json and "
                             "predictions.jsonl): run `complaint-motive eval … --report` first")
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in
                (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines() if line]
        return metrics, {r["id"]: r for r in rows}

    (old, old_rows), (new, new_rows) = load(before), load(after)

    def value(metrics: dict[str, Any], path: str) -> float | None:
        node: Any = metrics
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, int | float) else None

    lines = [f"| metric | {before.name} | {after.name} | Δ |", "| --- | --- | --- | --- |"]
    for path in ("n", "errors", "motive.accuracy", "motive.macro_f1", "stage.accuracy",
                 "stage.macro_f1", "needs.f1", "risk_flags.recall", "legitimacy.accuracy",
                 "grounding.with_valid_citation", "grounding.evidence_found", "degraded",
                 "latency_ms.p50", "latency_ms.p95", "tokens.total", "cost_usd"):
        a, b = value(old, path), value(new, path)
        delta = f"{b - a:+.4f}" if a is not None and b is not None else ""
        lines.append(f"| {path} | {a} | {b} | {delta} |")
    changed = [(i, old_rows[i], new_rows[i]) for i in old_rows.keys() & new_rows.keys()
               if (old_rows[i].get("motive"), old_rows[i].get("stage"))
               != (new_rows[i].get("motive"), new_rows[i].get("stage"))]
    lines += ["", f"{len(changed)} inputs changed prediction", "",
              "| id | gold | before | after |", "| --- | --- | --- | --- |"]
    lines += [f"| {i} | {a['gold_motive']}/{a['gold_stage']} | {a.get('motive')}/"
              f"{a.get('stage')} | {b.get('motive')}/{b.get('stage')} |"
              for i, a, b in sorted(changed)]
    return "\n".join(lines)
