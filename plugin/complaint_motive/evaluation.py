"""Evaluation: a labelled set in; metrics, per-item predictions, a report and plots out.

Metrics come from scikit-learn. A prediction of one of an item's ``alt_motives`` (motives a
careful annotator would also accept) counts as correct, and the report says how many were
counted that way. Accuracy and macro-F1 carry bootstrap 95% confidence intervals (resampled
items, a fixed seed so a report is reproducible); a comparison of two runs resamples the
same items in both (paired) to say which differences are outside the noise.

A set is any table ``readers.read_rows`` reads (JSONL, CSV, Parquet, a DataFrame, dicts).
Columns the labelled schema does not score are kept, untouched, under each prediction's
``extra``; they can slice the metrics (``by``), as can ``lang`` (detected when absent).
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InputError
from .exemplars import LabelledComplaint, LineProblem
from .inputs import detect_language
from .plots import warm_up as warm_up_plots
from .plots import write_plots
from .readers import Row, read_jsonl, read_rows, validation_summary
from .taxonomy import NeedId, PrimaryMotiveId, RiskFlagId, StageId
from .vocab import LEVELS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import numpy as np

    from .analyzer import MotiveAnalyzer, Outcome

    #: Where outcomes come from: ``analyzer.aiter_outcomes`` or the Batch API's.
    OutcomeSource = Callable[..., AsyncIterator[Outcome]]

log = logging.getLogger(__name__)

_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)
#: Bootstrap resamples behind every confidence interval; the seed makes reports repeatable.
RESAMPLES = 1000
_SEED = 20260101
#: The columns that are scored: a row whose value here is invalid is skipped, reported.
_LABELS = ("id", "text", "motive", "stage", "alt_motives", "needs", "risk_flags",
           "legitimacy")
#: What a prediction keeps as its own fields; every other column of the set goes to ``extra``.
_SCORED = (*_LABELS, "lang")
_LISTS = ("alt_motives", "needs", "risk_flags")
MISSING = "(missing)"


class FieldMap(BaseModel):
    """Which column holds what, for sets whose columns have other names
    (``FieldMap(text="body", motive="label")``). A row without an id is named
    ``line-N`` after its line."""

    model_config = ConfigDict(frozen=True)

    id: str = "id"
    text: str = "text"
    motive: str = "motive"
    stage: str = "stage"


class Prediction(BaseModel):
    """One line of ``predictions.jsonl``: the input, its gold labels and what came back."""

    id: str
    line: int | None = None
    text: str
    lang: str | None = Field(None, description="the set's `lang`, else the text's script")
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
    extra: dict[str, Any] = Field({}, description="the set's other columns, untouched")

    @property
    def motive_correct(self) -> bool:
        return self.motive is not None and (self.motive == self.gold_motive
                                            or self.motive in self.alt_motives)

    def value_of(self, name: str) -> str:
        """This item's value in column ``name``, as slice text (``lang`` always has one)."""
        if name == "lang":
            return self.lang or detect_language(self.text)
        value = self.extra.get(name)
        return MISSING if value is None else str(value)


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
    accuracy_ci: list[float] | None = Field(None, description="bootstrap 95% interval")
    macro_f1_ci: list[float] | None = Field(None, description="bootstrap 95% interval")


class Headline(BaseModel):
    """The headline metrics of a set of predictions (a slice of the set, or all of it)."""

    n: int
    errors: int
    motive_accuracy: float | None = None
    motive_accuracy_ci: list[float] | None = None
    motive_macro_f1: float | None = None
    motive_macro_f1_ci: list[float] | None = None
    stage_accuracy: float | None = None
    stage_accuracy_ci: list[float] | None = None
    stage_macro_f1: float | None = None
    stage_macro_f1_ci: list[float] | None = None


class Agreement(BaseModel):
    """Cohen's kappa on the motive, over items both annotators labelled and the model
    answered: the agreement between people is the ceiling a model can be held to."""

    field: str
    n: int
    between_annotators: float | None
    first_vs_model: float | None
    second_vs_model: float | None


class Confusion(BaseModel):
    """A frequent miss: gold motive, the motive predicted instead, and some examples."""

    gold: str
    predicted: str
    n: int
    examples: list[dict[str, str]]


class Delta(BaseModel):
    """One metric in two runs. ``ci`` is the paired bootstrap 95% interval of the delta over
    the items both runs answered; ``outside_noise`` when it does not contain zero."""

    metric: str
    before: float | None
    after: float | None
    delta: float | None
    ci: list[float] | None = None
    outside_noise: bool | None = None


class Comparison(BaseModel):
    before: str
    after: str
    paired_n: int
    deltas: list[Delta]
    changed: list[dict[str, Any]] = Field(description="inputs whose motive or stage changed")


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
    rows_read: int = Field(0, description="rows with content in the set (before --limit)")
    slices: dict[str, dict[str, Headline]] = Field(
        {}, description="per column given with `by`, the headline per value")
    agreement: Agreement | None = None
    worst_confusions: list[Confusion] = []
    comparison: Comparison | None = None

    @property
    def scored(self) -> int:
        return self.n - self.errors

    def summary(self) -> str:
        """What a terminal shows: how many rows were read, skipped and scored, then the
        headline figures with their intervals."""
        def figure(metrics: LabelMetrics | None) -> str:
            if metrics is None:
                return "n/a"
            return (f"{metrics.accuracy:.3f} {_ci(metrics.accuracy_ci)} (macro-F1 "
                    f"{metrics.macro_f1:.3f} {_ci(metrics.macro_f1_ci)}, majority "
                    f"{metrics.majority_baseline:.3f})")

        lines = [f"read {self.rows_read} rows: {len(self.skipped_lines)} skipped, "
                 f"{self.n} analysed, {self.scored} scored, {self.errors} errors"]
        lines += [f"  skipped line {p.line}: {p.message}" for p in self.skipped_lines[:5]]
        if len(self.skipped_lines) > 5:
            lines.append(f"  … {len(self.skipped_lines) - 5} more in metrics.json")
        for field_name, values in self.slices.items():
            lines.append(f"by {field_name}: " + ", ".join(
                f"{value} n={h.n} motive {_figure(h.motive_accuracy)}"
                for value, h in values.items()))
        if self.agreement:
            lines.append(f"kappa (n={self.agreement.n}): annotators "
                         f"{_figure(self.agreement.between_annotators)}, first vs model "
                         f"{_figure(self.agreement.first_vs_model)}, second vs model "
                         f"{_figure(self.agreement.second_vs_model)}")
        return ("\n".join(lines) + f"\ndegraded={self.degraded}\n"
                f"motive accuracy {figure(self.motive)}\nstage accuracy {figure(self.stage)}\n"
                f"latency p50 {self.latency_ms.get('p50', 0):.1f} ms, p95 "
                f"{self.latency_ms.get('p95', 0):.1f} ms; tokens {self.tokens['total']}; "
                f"cost ${self.cost_usd:.4f}")


def _ci(interval: list[float] | None) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass(frozen=True)
class LabelledRow:
    """A labelled item as read from a set: where it was, its labels, what else it carried."""

    line: int
    item: LabelledComplaint
    lang: str
    extra: dict[str, Any] = field(default_factory=dict)


def read_labelled_rows(rows: Iterable[Row], fields: FieldMap | None = None
                       ) -> tuple[list[LabelledRow], list[LineProblem], int]:
    """Labelled items from table rows, the problems of the rows that are not (with their
    line), and how many rows had content. Columns outside the labelled schema are kept in
    ``extra``, never a reason to skip; a repeated id is a problem (results are keyed by id)."""
    fields = fields or FieldMap()
    known = set(LabelledComplaint.model_fields)
    items: list[LabelledRow] = []
    problems: list[LineProblem] = []
    first_seen: dict[str, int] = {}
    read = 0
    for row in rows:
        if row.blank:
            continue
        read += 1
        if row.record is None:
            problems.append(LineProblem(line=row.line, message=row.problem or "unreadable"))
            continue
        record = dict(row.record)
        for ours, theirs in fields.model_dump().items():
            if theirs != ours and theirs in record:
                record[ours] = record.pop(theirs)
        record["id"] = _id_text(record.get("id"), row.line)
        for name in _LISTS:
            record[name] = _label_list(record.get(name))
        payload = {k: v for k, v in record.items() if k in known and v is not None}
        try:
            item = _labelled(payload)
        except ValidationError as error:
            problems.append(LineProblem(line=row.line, message=_short(error, fields)))
            continue
        if item.id in first_seen:
            problems.append(LineProblem(line=row.line, message=f"duplicate id {item.id!r} "
                                        f"(first on line {first_seen[item.id]})"))
            continue
        first_seen[item.id] = row.line
        lang = record.get("lang")
        items.append(LabelledRow(
            line=row.line, item=item,
            lang=str(lang) if lang else detect_language(item.text),
            extra={k: v for k, v in record.items() if k not in _SCORED}))
    return items, problems, read


def _labelled(payload: dict[str, Any]) -> LabelledComplaint:
    """The item, or the ``ValidationError`` of its labels. A descriptive column the schema
    also knows (``channel``, ``lang``, ``source``, …) holding values of the analyst's own
    (``channel: "wechat"``) is left out of the item rather than skipping the row: it stays,
    as given, in ``extra`` and the slices."""
    try:
        return LabelledComplaint.model_validate(payload)
    except ValidationError as error:
        wrong = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
        if not wrong or wrong & set(_LABELS) or not wrong <= set(payload):
            raise
        return LabelledComplaint.model_validate(
            {k: v for k, v in payload.items() if k not in wrong})


def _id_text(value: Any, line: int) -> str:
    if value is None:
        return f"line-{line}"
    if isinstance(value, float) and value.is_integer():  # a DataFrame's numeric id column
        value = int(value)
    return str(value)


def _label_list(value: Any) -> Any:
    """A list column as a list: spreadsheets write ``compensation;respect`` or a JSON list."""
    if not isinstance(value, str):
        return value if value is not None else ()
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value  # validation names the column
    return tuple(part.strip() for part in text.replace("|", ";").replace(",", ";").split(";")
                 if part.strip())


def _short(error: ValidationError, fields: FieldMap) -> str:
    return validation_summary(error, fields.model_dump())  # the names the set uses


def _prediction(row: LabelledRow, outcome: Outcome) -> Prediction:
    from .validation import quote_found

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
    from sklearn.metrics import confusion_matrix
    from sklearn.metrics import precision_recall_fscore_support as prfs

    present = set(gold) | set(predicted)
    labels = [label for label in order if label in present] + sorted(present - set(order))
    precision, recall, f1, support = prfs(gold, predicted, labels=labels, zero_division=0)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)
    with warnings.catch_warnings():  # one label alone is a fine 1×1 matrix: we pass labels
        warnings.filterwarnings("ignore", message="A single label was found")
        confusion = confusion_matrix(gold, predicted, labels=labels).tolist()
    accuracy, macro_f1, accuracy_ci, macro_f1_ci = _scores(gold, predicted)
    return LabelMetrics(
        accuracy=accuracy, macro_f1=macro_f1, accuracy_ci=accuracy_ci, macro_f1_ci=macro_f1_ci,
        labels=labels,
        per_class={label: ClassMetrics(precision=round(float(p), 4), recall=round(float(r), 4),
                                       f1=round(float(f), 4), support=int(s))
                   for label, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                strict=True)},
        confusion=confusion,
        majority_baseline=round(majority, 4))


def _scores(gold: list[str], predicted: list[str]
            ) -> tuple[float, float, list[float], list[float]]:
    """Accuracy and macro-F1 (scikit-learn; F1 averaged over the gold labels), each with its
    bootstrap 95% interval."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    cells, k = _cells(gold, predicted)
    # Integer codes for scikit-learn: the same scores, without its slow path for strings
    # (slices call this many times on large sets).
    gold_codes, predicted_codes = cells // k, cells % k
    accuracy = round(float(accuracy_score(gold_codes, predicted_codes)), 4)
    macro_f1 = round(float(f1_score(gold_codes, predicted_codes,
                                    labels=np.unique(gold_codes), average="macro",
                                    zero_division=0)), 4)
    accuracies, f1s = _scores_of(_resampled_confusions([(cells, k)])[0])
    return accuracy, macro_f1, _interval(accuracies), _interval(f1s)


def _cells(gold: Sequence[str], predicted: Sequence[str],
           labels: Sequence[str] | None = None) -> tuple[np.ndarray, int]:
    """Each item's confusion-matrix cell (gold × predicted, as one integer), and the number
    of labels ``k`` (the matrix is k × k)."""
    import numpy as np

    labels = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    code = {label: n for n, label in enumerate(labels)}
    k = len(labels)
    return np.array([code[g] * k + code[p] for g, p in zip(gold, predicted, strict=True)],
                    dtype=np.int64), k


def _resampled_confusions(systems: Sequence[tuple[np.ndarray, int]],
                          resamples: int = RESAMPLES) -> list[np.ndarray]:
    """Bootstrap confusion matrices, ``(resamples, k, k)`` per system, for systems that
    answered the same items (each ``_cells`` of the items in one order).

    Drawing n items with replacement is a multinomial draw over the distinct items, and a
    confusion matrix only sees which cell (per system) an item falls in: so the draw is over
    the distinct cell combinations, a handful, instead of n indices per resample. The same
    draw serves every system: with two, that is the paired bootstrap."""
    import numpy as np

    n = len(systems[0][0])
    joint = np.zeros(n, dtype=np.int64)
    for cells, k in systems:
        joint = joint * (k * k) + cells
    distinct, counts = np.unique(joint, return_counts=True)
    weights = np.random.default_rng(_SEED).multinomial(n, counts / n, size=resamples)
    confusions = []
    remaining = distinct
    for _, k in reversed(systems):
        own = remaining % (k * k)
        remaining = remaining // (k * k)
        onehot = np.zeros((len(distinct), k * k))
        onehot[np.arange(len(distinct)), own] = 1
        confusions.append((weights @ onehot).reshape(resamples, k, k))
    return confusions[::-1]


def _scores_of(confusions: np.ndarray) -> tuple[list[float], list[float]]:
    """Accuracy and macro-F1 of each ``(k, k)`` confusion matrix in ``confusions``: F1 of a
    class is 2·TP / (gold count + predicted count), averaged over the gold labels present,
    as ``_scores`` asks scikit-learn for the whole set."""
    import numpy as np

    hits = np.diagonal(confusions, axis1=1, axis2=2)
    support = confusions.sum(axis=2)
    both = support + confusions.sum(axis=1)
    f1 = np.divide(2 * hits, both, out=np.zeros(hits.shape), where=both > 0)
    present = support > 0
    return ((hits.sum(axis=1) / support.sum(axis=1)).tolist(),
            ((f1 * present).sum(axis=1) / present.sum(axis=1)).tolist())


def _interval(values: Sequence[float]) -> list[float]:
    import numpy as np

    low, high = np.percentile(np.array(values), [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def _motive_pairs(answered: Sequence[Prediction]) -> tuple[list[str], list[str]]:
    """Gold and predicted motives; with an accepted alternative, the gold label becomes the
    prediction for the metrics."""
    return ([(p.motive or "") if p.motive_correct else p.gold_motive for p in answered],
            [p.motive or "" for p in answered])


def _stage_pairs(answered: Sequence[Prediction]) -> tuple[list[str], list[str]]:
    staged = [p for p in answered if p.gold_stage]
    return [p.gold_stage or "" for p in staged], [p.stage or "" for p in staged]


def headline(predictions: Sequence[Prediction]) -> Headline:
    """The headline metrics, with intervals, of any set of predictions (a slice)."""
    answered = [p for p in predictions if p.error is None]
    figures: dict[str, Any] = {"n": len(predictions), "errors": len(predictions) - len(answered)}
    for name, (gold, predicted) in (("motive", _motive_pairs(answered)),
                                    ("stage", _stage_pairs(answered))):
        if gold:
            accuracy, macro_f1, accuracy_ci, macro_f1_ci = _scores(gold, predicted)
            figures |= {f"{name}_accuracy": accuracy, f"{name}_accuracy_ci": accuracy_ci,
                        f"{name}_macro_f1": macro_f1, f"{name}_macro_f1_ci": macro_f1_ci}
    return Headline(**figures)


def _slices(predictions: Sequence[Prediction], by: Sequence[str]
            ) -> dict[str, dict[str, Headline]]:
    slices: dict[str, dict[str, Headline]] = {}
    for name in by:
        groups: dict[str, list[Prediction]] = {}
        for prediction in predictions:
            groups.setdefault(prediction.value_of(name), []).append(prediction)
        slices[name] = {value: headline(group) for value, group
                        in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))}
    return slices


def _agreement(answered: Sequence[Prediction], second: str) -> Agreement:
    from sklearn.metrics import cohen_kappa_score

    both = [p for p in answered if p.extra.get(second) not in (None, "")]
    first = [p.gold_motive for p in both]
    other = [str(p.extra[second]).strip() for p in both]
    model = [p.motive or "" for p in both]

    def kappa(a: list[str], b: list[str]) -> float | None:
        if not a or len(set(a) | set(b)) < 2:
            return None  # one label everywhere: kappa is undefined
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(cohen_kappa_score(a, b))
        return None if value != value else round(value, 4)

    return Agreement(field=second, n=len(both), between_annotators=kappa(first, other),
                     first_vs_model=kappa(first, model), second_vs_model=kappa(other, model))


def _worst_confusions(answered: Sequence[Prediction], top: int = 5,
                      examples: int = 3) -> list[Confusion]:
    missed: dict[tuple[str, str], list[Prediction]] = {}
    for p in answered:
        if not p.motive_correct:
            missed.setdefault((p.gold_motive, p.motive or ""), []).append(p)
    ranked = sorted(missed.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [Confusion(gold=gold, predicted=predicted, n=len(group),
                      examples=[{"id": p.id, "text": p.text[:200]} for p in group[:examples]])
            for (gold, predicted), group in ranked]


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
                 run: dict[str, Any], *, by: Sequence[str] = (),
                 second_annotator: str | None = None,
                 rows_read: int | None = None) -> EvaluationReport:
    """The report over ``predictions``: headline and per-class metrics with intervals,
    slices per column in ``by``, annotator agreement when ``second_annotator`` names the
    column holding a second person's motive."""
    answered = [p for p in predictions if p.error is None]
    via_alt = sum(1 for p in answered if p.motive != p.gold_motive and p.motive_correct)
    motive = _label_metrics(*_motive_pairs(answered),
                            [m.value for m in PrimaryMotiveId]) if answered else None
    staged = [p for p in answered if p.gold_stage]
    stage = _label_metrics(*_stage_pairs(answered),
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
    # Time and tokens over every item, failed ones included: each attempt was paid for.
    latencies = [p.latency_ms for p in predictions if p.latency_ms is not None]
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
        tokens={"input": sum(p.input_tokens for p in predictions),
                "output": sum(p.output_tokens for p in predictions),
                "total": sum(p.input_tokens + p.output_tokens for p in predictions)},
        cost_usd=round(sum(p.cost_usd or 0.0 for p in predictions), 6), run=run,
        rows_read=len(predictions) + len(skipped) if rows_read is None else rows_read,
        slices=_slices(predictions, by),
        agreement=_agreement(answered, second_annotator) if second_annotator else None,
        worst_confusions=_worst_confusions(answered))


#: What ``evaluate`` reads: a path (JSONL, CSV, Parquet), a DataFrame, dicts or items.
Dataset = Path | str | Iterable[Any]


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
    from .render import progress

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
    from .prompts import prompt_version

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


def write_report(report: EvaluationReport, predictions: Sequence[Prediction],
                 folder: Path) -> None:
    """``metrics.json``, ``report.md``, ``report.html`` (one self-contained file) and the
    plots (predictions are written as they come)."""
    from .html_report import render_html

    (folder / "metrics.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    plots = write_plots(report, folder)
    (folder / "report.md").write_text(_markdown(report, plots, predictions), encoding="utf-8")
    (folder / "report.html").write_text(
        render_html(report, {name: (folder / name).read_bytes() for name in plots}),
        encoding="utf-8")


def _markdown(report: EvaluationReport, plots: list[str],
              predictions: Sequence[Prediction]) -> str:
    lines = [f"# Evaluation report\n\n`{report.run['dataset']}` · backend "
             f"`{report.run['backend']}` · model `{report.run['model']}` · prompt "
             f"`{report.run['prompt_version']}` · corpus `{report.run['corpus_version']}`\n",
             "| metric | value |", "| --- | --- |", f"| rows read | {report.rows_read} |",
             f"| skipped | {len(report.skipped_lines)} |", f"| items | {report.n} |",
             f"| errors | {report.errors} |", f"| degraded | {report.degraded} |"]
    for name, metrics in (("motive", report.motive), ("stage", report.stage)):
        if metrics:
            lines += [f"| {name} accuracy | {metrics.accuracy:.3f} {_ci(metrics.accuracy_ci)} "
                      f"(majority baseline {metrics.majority_baseline:.3f}) |",
                      f"| {name} macro-F1 | {metrics.macro_f1:.3f} "
                      f"{_ci(metrics.macro_f1_ci)} |"]
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
    for name, values in report.slices.items():
        lines += ["", f"## By {name}\n", "| value | n | errors | motive accuracy | motive "
                  "macro-F1 | stage accuracy | stage macro-F1 |", "| --- | --- | --- | --- | "
                  "--- | --- | --- |"]
        lines += [f"| {value} | {h.n} | {h.errors} | {_figure(h.motive_accuracy)} "
                  f"{_ci(h.motive_accuracy_ci)} | {_figure(h.motive_macro_f1)} | "
                  f"{_figure(h.stage_accuracy)} {_ci(h.stage_accuracy_ci)} | "
                  f"{_figure(h.stage_macro_f1)} |" for value, h in values.items()]
    if report.agreement:
        a = report.agreement
        lines += ["", f"## Agreement (Cohen's kappa, n={a.n}, second annotator `{a.field}`)\n",
                  "| pair | kappa |", "| --- | --- |",
                  f"| gold vs second annotator | {_figure(a.between_annotators)} |",
                  f"| gold vs model | {_figure(a.first_vs_model)} |",
                  f"| second annotator vs model | {_figure(a.second_vs_model)} |"]
    if report.comparison:
        lines += ["", "## Compared with an earlier run\n",
                  comparison_markdown(report.comparison)]
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


def load_report(folder: Path) -> tuple[dict[str, Any], list[Prediction]]:
    """An evaluation report folder's ``metrics.json`` and predictions, or an ``InputError``."""
    if not (folder / "metrics.json").is_file() or not (folder / "predictions.jsonl").is_file():
        raise InputError(f"{folder} is not an evaluation report (no metrics.json and "
                         "predictions.jsonl): run `complaint-motive eval … --report` first")
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{folder}: metrics.json is damaged") from None
    read = list(read_jsonl(folder / "predictions.jsonl", Prediction))
    damaged = next((r for r in read if r.item is None), None)
    if damaged is not None:
        raise InputError(f"{damaged.where} is not a prediction ({damaged.problem})")
    predictions = [r.item for r in read if r.item is not None]
    return metrics, predictions


_COMPARED = ("n", "errors", "motive.accuracy", "motive.macro_f1", "stage.accuracy",
             "stage.macro_f1", "needs.f1", "risk_flags.recall", "legitimacy.accuracy",
             "grounding.with_valid_citation", "grounding.evidence_found", "degraded",
             "latency_ms.p50", "latency_ms.p95", "tokens.total", "cost_usd")


def compare_predictions(before: Path, old: tuple[dict[str, Any], list[Prediction]],
                        new: tuple[dict[str, Any], list[Prediction]], *,
                        after_name: str) -> Comparison:
    """Metric deltas between two runs; accuracy and macro-F1 get a paired bootstrap
    interval over the items both answered (the same resampled items in both runs)."""
    (old_metrics, old_rows), (new_metrics, new_rows) = old, new

    def value(metrics: dict[str, Any], path: str) -> float | None:
        node: Any = metrics
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, int | float) else None

    before_by_id = {p.id: p for p in old_rows if p.error is None}
    pairs = [(before_by_id[p.id], p) for p in new_rows
             if p.error is None and p.id in before_by_id]
    intervals = _paired_intervals(pairs)
    deltas = []
    for path in _COMPARED:
        a, b = value(old_metrics, path), value(new_metrics, path)
        ci = intervals.get(path)
        deltas.append(Delta(metric=path, before=a, after=b,
                            delta=round(b - a, 4) if a is not None and b is not None else None,
                            ci=ci, outside_noise=None if ci is None
                            else bool(ci[0] > 0 or ci[1] < 0)))
    old_by_id = {p.id: p for p in old_rows}
    changed = [{"id": p.id, "gold": f"{p.gold_motive}/{p.gold_stage}",
                "before": f"{old_by_id[p.id].motive}/{old_by_id[p.id].stage}",
                "after": f"{p.motive}/{p.stage}"}
               for p in new_rows if p.id in old_by_id
               and (old_by_id[p.id].motive, old_by_id[p.id].stage) != (p.motive, p.stage)]
    return Comparison(before=before.name, after=after_name, paired_n=len(pairs),
                      deltas=deltas, changed=sorted(changed, key=lambda c: c["id"]))


def _paired_intervals(pairs: list[tuple[Prediction, Prediction]]) -> dict[str, list[float]]:
    """Paired bootstrap 95% intervals of after − before, per metric."""
    if len(pairs) < 2:
        return {}
    intervals = {}
    for name, split in (("motive", _motive_pairs), ("stage", _stage_pairs)):
        kept = pairs if name == "motive" else [(a, b) for a, b in pairs
                                               if a.gold_stage and b.gold_stage]
        if len(kept) < 2:
            continue
        old = split([a for a, _ in kept])
        new = split([b for _, b in kept])
        labels = sorted(set(old[0]) | set(old[1]) | set(new[0]) | set(new[1]))
        before, after = _resampled_confusions([_cells(*old, labels), _cells(*new, labels)])
        (old_accuracy, old_f1), (new_accuracy, new_f1) = _scores_of(before), _scores_of(after)
        deltas = list(zip((b - a for a, b in zip(old_accuracy, new_accuracy, strict=True)),
                          (b - a for a, b in zip(old_f1, new_f1, strict=True)), strict=True))
        intervals[f"{name}.accuracy"] = _interval([d for d, _ in deltas])
        intervals[f"{name}.macro_f1"] = _interval([d for _, d in deltas])
    return intervals


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: deltas (with their paired intervals) and changed inputs."""
    lines = [f"| metric | {comparison.before} | {comparison.after} | Δ | paired 95% CI | "
             "outside the noise |", "| --- | --- | --- | --- | --- | --- |"]
    for d in comparison.deltas:
        delta = "" if d.delta is None else f"{d.delta:+.4f}"
        noise = "" if d.outside_noise is None else ("yes" if d.outside_noise else "no")
        lines.append(f"| {d.metric} | {d.before} | {d.after} | {delta} | {_ci(d.ci)} | "
                     f"{noise} |")
    lines += ["", f"{len(comparison.changed)} inputs changed prediction "
              f"({comparison.paired_n} answered in both runs)", "",
              "| id | gold | before | after |", "| --- | --- | --- | --- |"]
    lines += [f"| {c['id']} | {c['gold']} | {c['before']} | {c['after']} |"
              for c in comparison.changed]
    return "\n".join(lines)


def compare_reports(before: Path, after: Path) -> str:
    """A Markdown table of metric deltas (paired bootstrap intervals for accuracy and
    macro-F1) and the inputs whose predictions changed."""
    return comparison_markdown(compare_predictions(before, load_report(before),
                                                   load_report(after), after_name=after.name))
