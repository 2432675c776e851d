"""Two evaluation runs compared item by item: paired bootstrap intervals say which
differences are outside the noise."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..readers import read_jsonl
from .metrics import (
    interval,
    motive_pairs,
    paired_cells,
    resampled_confusions,
    scores_of,
    stage_pairs,
)
from .models import Comparison, Delta, Prediction, ci_text

log = logging.getLogger(__name__)



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
    for name, split in (("motive", motive_pairs), ("stage", stage_pairs)):
        kept = pairs if name == "motive" else [(a, b) for a, b in pairs
                                               if a.gold_stage and b.gold_stage]
        if len(kept) < 2:
            continue
        old = split([a for a, _ in kept])
        new = split([b for _, b in kept])
        labels = sorted(set(old[0]) | set(old[1]) | set(new[0]) | set(new[1]))
        before, after = resampled_confusions([paired_cells(*old, labels),
                                              paired_cells(*new, labels)])
        (old_accuracy, old_f1), (new_accuracy, new_f1) = scores_of(before), scores_of(after)
        deltas = list(zip((b - a for a, b in zip(old_accuracy, new_accuracy, strict=True)),
                          (b - a for a, b in zip(old_f1, new_f1, strict=True)), strict=True))
        intervals[f"{name}.accuracy"] = interval([d for d, _ in deltas])
        intervals[f"{name}.macro_f1"] = interval([d for _, d in deltas])
    return intervals


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: deltas (with their paired intervals) and changed inputs."""
    lines = [f"| metric | {comparison.before} | {comparison.after} | Δ | paired 95% CI | "
             "outside the noise |", "| --- | --- | --- | --- | --- | --- |"]
    for d in comparison.deltas:
        delta = "" if d.delta is None else f"{d.delta:+.4f}"
        noise = "" if d.outside_noise is None else ("yes" if d.outside_noise else "no")
        lines.append(f"| {d.metric} | {d.before} | {d.after} | {delta} | {ci_text(d.ci)} | "
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
