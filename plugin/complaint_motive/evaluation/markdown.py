"""``report.md`` and the report folder: the figures written for a person."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .compare import comparison_markdown
from .models import EvaluationReport, Prediction, ci_text, figure_text
from .plots import write_plots

log = logging.getLogger(__name__)




def write_report(report: EvaluationReport, predictions: Sequence[Prediction],
                 folder: Path) -> None:
    """``metrics.json``, ``report.md``, ``report.html`` (one self-contained file) and the
    plots (predictions are written as they come)."""
    from .html import render_html

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
            lines += [f"| {name} accuracy | {metrics.accuracy:.3f} {ci_text(metrics.accuracy_ci)} "
                      f"(majority baseline {metrics.majority_baseline:.3f}) |",
                      f"| {name} macro-F1 | {metrics.macro_f1:.3f} "
                      f"{ci_text(metrics.macro_f1_ci)} |"]
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
        lines += [f"| {value} | {h.n} | {h.errors} | {figure_text(h.motive_accuracy)} "
                  f"{ci_text(h.motive_accuracy_ci)} | {figure_text(h.motive_macro_f1)} | "
                  f"{figure_text(h.stage_accuracy)} {ci_text(h.stage_accuracy_ci)} | "
                  f"{figure_text(h.stage_macro_f1)} |" for value, h in values.items()]
    if report.agreement:
        a = report.agreement
        lines += ["", f"## Agreement (Cohen's kappa, n={a.n}, second annotator `{a.field}`)\n",
                  "| pair | kappa |", "| --- | --- |",
                  f"| gold vs second annotator | {figure_text(a.between_annotators)} |",
                  f"| gold vs model | {figure_text(a.first_vs_model)} |",
                  f"| second annotator vs model | {figure_text(a.second_vs_model)} |"]
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


