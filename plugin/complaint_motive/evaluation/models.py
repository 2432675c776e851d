"""The evaluation report's models: a prediction per item, the figures, the report and
a comparison of two reports (stable JSON keys)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..analysis.inputs import detect_language
from ..knowledge.exemplars import LineProblem

log = logging.getLogger(__name__)



MISSING = "(missing)"


def ci_text(interval: list[float] | None) -> str:
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def figure_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


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
            return (f"{metrics.accuracy:.3f} {ci_text(metrics.accuracy_ci)} (macro-F1 "
                    f"{metrics.macro_f1:.3f} {ci_text(metrics.macro_f1_ci)}, majority "
                    f"{metrics.majority_baseline:.3f})")

        lines = [f"read {self.rows_read} rows: {len(self.skipped_lines)} skipped, "
                 f"{self.n} analysed, {self.scored} scored, {self.errors} errors"]
        lines += [f"  skipped line {p.line}: {p.message}" for p in self.skipped_lines[:5]]
        if len(self.skipped_lines) > 5:
            lines.append(f"  … {len(self.skipped_lines) - 5} more in metrics.json")
        for field_name, values in self.slices.items():
            lines.append(f"by {field_name}: " + ", ".join(
                f"{value} n={h.n} motive {figure_text(h.motive_accuracy)}"
                for value, h in values.items()))
        if self.agreement:
            lines.append(f"kappa (n={self.agreement.n}): annotators "
                         f"{figure_text(self.agreement.between_annotators)}, first vs model "
                         f"{figure_text(self.agreement.first_vs_model)}, second vs model "
                         f"{figure_text(self.agreement.second_vs_model)}")
        return ("\n".join(lines) + f"\ndegraded={self.degraded}\n"
                f"motive accuracy {figure(self.motive)}\nstage accuracy {figure(self.stage)}\n"
                f"latency p50 {self.latency_ms.get('p50', 0):.1f} ms, p95 "
                f"{self.latency_ms.get('p95', 0):.1f} ms; tokens {self.tokens['total']}; "
                f"cost ${self.cost_usd:.4f}")


