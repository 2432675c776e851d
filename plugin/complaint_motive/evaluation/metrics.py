"""The figures: scikit-learn's metrics with bootstrap 95% intervals (resampled items, a
fixed seed so a report is reproducible), per slice, per confidence level, and the report
built from them."""

from __future__ import annotations

import logging
import statistics
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..knowledge.exemplars import LineProblem
from ..knowledge.taxonomy import NeedId, PrimaryMotiveId, RiskFlagId, StageId
from ..vocab import LEVELS
from .models import (
    AccuracyFigures,
    Agreement,
    CalibrationBucket,
    ClassMetrics,
    Confusion,
    EvaluationReport,
    Headline,
    LabelMetrics,
    LevelFigures,
    Prediction,
    RecallFigures,
    SetFigures,
)

if TYPE_CHECKING:
    import numpy as np


log = logging.getLogger(__name__)



_BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)
#: Bootstrap resamples behind every confidence interval; the seed makes reports repeatable.
RESAMPLES = 1000
_SEED = 20260101
#: The columns that are scored: a row whose value here is invalid is skipped, reported.


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

    cells, k = paired_cells(gold, predicted)
    # Integer codes for scikit-learn: the same scores, without its slow path for strings
    # (slices call this many times on large sets).
    gold_codes, predicted_codes = cells // k, cells % k
    accuracy = round(float(accuracy_score(gold_codes, predicted_codes)), 4)
    macro_f1 = round(float(f1_score(gold_codes, predicted_codes,
                                    labels=np.unique(gold_codes), average="macro",
                                    zero_division=0)), 4)
    accuracies, f1s = scores_of(resampled_confusions([(cells, k)])[0])
    return accuracy, macro_f1, interval(accuracies), interval(f1s)


def paired_cells(gold: Sequence[str], predicted: Sequence[str],
           labels: Sequence[str] | None = None) -> tuple[np.ndarray, int]:
    """Each item's confusion-matrix cell (gold × predicted, as one integer), and the number
    of labels ``k`` (the matrix is k × k)."""
    import numpy as np

    labels = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    code = {label: n for n, label in enumerate(labels)}
    k = len(labels)
    return np.array([code[g] * k + code[p] for g, p in zip(gold, predicted, strict=True)],
                    dtype=np.int64), k


def resampled_confusions(systems: Sequence[tuple[np.ndarray, int]],
                          resamples: int = RESAMPLES) -> list[np.ndarray]:
    """Bootstrap confusion matrices, ``(resamples, k, k)`` per system, for systems that
    answered the same items (each ``cells`` of the items in one order).

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


def scores_of(confusions: np.ndarray) -> tuple[list[float], list[float]]:
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


def interval(values: Sequence[float]) -> list[float]:
    import numpy as np

    low, high = np.percentile(np.array(values), [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def motive_pairs(answered: Sequence[Prediction]) -> tuple[list[str], list[str]]:
    """Gold and predicted motives; with an accepted alternative, the gold label becomes the
    prediction for the metrics."""
    return ([(p.motive or "") if p.motive_correct else p.gold_motive for p in answered],
            [p.motive or "" for p in answered])


def stage_pairs(answered: Sequence[Prediction]) -> tuple[list[str], list[str]]:
    staged = [p for p in answered if p.gold_stage]
    return [p.gold_stage or "" for p in staged], [p.stage or "" for p in staged]


def headline(predictions: Sequence[Prediction]) -> Headline:
    """The headline metrics, with intervals, of any set of predictions (a slice)."""
    answered = [p for p in predictions if p.error is None]
    figures: dict[str, Any] = {"n": len(predictions), "errors": len(predictions) - len(answered)}
    for name, (gold, predicted) in (("motive", motive_pairs(answered)),
                                    ("stage", stage_pairs(answered))):
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
    motive = _label_metrics(*motive_pairs(answered),
                            [m.value for m in PrimaryMotiveId]) if answered else None
    staged = [p for p in answered if p.gold_stage]
    stage = _label_metrics(*stage_pairs(answered),
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


