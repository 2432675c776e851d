"""``report.html``: the evaluation as one file a person opens, plots embedded (base64), no
script and nothing fetched, so it reads the same when mailed or opened offline."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import EvaluationReport, Headline

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums}.ci{color:#777;font-size:.85em}.yes{color:#0a6b2d;
font-weight:600}.muted{color:#777}figure{display:inline-block;margin:.5rem 1rem .5rem 0}
figcaption{font-size:.85em;color:#555}img{max-width:100%;height:auto}
"""

_CAPTIONS = {"confusion_motive.png": "Motive confusion matrix (gold down, predicted across)",
             "confusion_stage.png": "Stage confusion matrix (stages in the order a customer "
                                    "moves through them)",
             "calibration.png": "Calibration of the motive confidence"}


def render_html(report: EvaluationReport, plots: Mapping[str, bytes]) -> str:
    """The report as one HTML page; ``plots`` maps each PNG's file name to its bytes."""
    run = report.run
    parts = [f"<h1>Evaluation report</h1><p class=muted>{escape(str(run.get('dataset')))} · "
             f"backend {escape(str(run.get('backend')))} · model {escape(str(run.get('model')))}"
             f" · prompt {escape(str(run.get('prompt_version')))} · corpus "
             f"{escape(str(run.get('corpus_version')))} · {escape(str(run.get('finished_at')))}"
             "</p>", _headline(report)]
    if report.comparison:
        parts.append(_comparison(report))
    for name, values in report.slices.items():
        parts.append(f"<h2>By {escape(name)}</h2>" + _slice_table(values))
    if report.agreement:
        a = report.agreement
        parts.append(f"<h2>Agreement (Cohen's kappa)</h2><p>{a.n} items with a second "
                     f"annotation in <code>{escape(a.field)}</code>; people's agreement is the "
                     "ceiling a model can be held to.</p>" + _table(
                         ["pair", "kappa"],
                         [["gold vs second annotator", _num(a.between_annotators)],
                          ["gold vs model", _num(a.first_vs_model)],
                          ["second annotator vs model", _num(a.second_vs_model)]]))
    parts.append("<h2>Confidence levels</h2>" + _table(
        ["level", "share", "motive accuracy", "stage share", "stage accuracy"],
        [[level, _num(v.share), _num(v.accuracy), _num(v.stage_share), _num(v.stage_accuracy)]
         for level, v in report.levels.items()]))
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(
            f"<figure><img alt=\"{escape(name)}\" src=\"data:image/png;base64,"
            f"{base64.b64encode(data).decode('ascii')}\"><figcaption>"
            f"{escape(_CAPTIONS.get(name, name))}</figcaption></figure>"
            for name, data in plots.items()))
    if report.motive:
        parts.append("<h2>Per motive</h2>" + _table(
            ["motive", "precision", "recall", "F1", "support"],
            [[label, _num(m.precision), _num(m.recall), _num(m.f1), str(m.support)]
             for label, m in report.motive.per_class.items()]))
    if report.worst_confusions:
        parts.append("<h2>Worst confusions</h2>" + _table(
            ["gold", "predicted", "n", "examples"],
            [[c.gold, c.predicted, str(c.n),
              _Raw("<br>".join(f"<b>{escape(e['id'])}</b>: {escape(e['text'])}"
                               for e in c.examples))] for c in report.worst_confusions]))
    if report.skipped_lines:
        parts.append(f"<h2>Skipped lines ({len(report.skipped_lines)})</h2>" + _table(
            ["line", "why"], [[str(p.line), p.message] for p in report.skipped_lines[:200]]))
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            "content=\"width=device-width,initial-scale=1\"><title>Evaluation report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


class _Raw(str):
    """Cell content that is already HTML (built from escaped parts)."""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(content: str) -> str:
    if isinstance(content, _Raw):
        return f"<td>{content}</td>"
    numeric = content.replace(".", "", 1).lstrip("+-").isdigit()
    return f"<td class=num>{escape(content)}</td>" if numeric else f"<td>{escape(content)}</td>"


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _with_ci(value: float | None, ci: list[float] | None) -> _Raw:
    interval = f" <span class=ci>[{ci[0]:.3f}, {ci[1]:.3f}]</span>" if ci else ""
    return _Raw(escape(_num(value)) + interval)


def _headline(report: EvaluationReport) -> str:
    rows: list[list[str]] = [
        ["rows read", str(report.rows_read)], ["skipped", str(len(report.skipped_lines))],
        ["analysed", str(report.n)], ["scored", str(report.scored)],
        ["errors", str(report.errors)], ["degraded", str(report.degraded)]]
    for name, metrics in (("motive", report.motive), ("stage", report.stage)):
        if metrics:
            rows += [[f"{name} accuracy", _with_ci(metrics.accuracy, metrics.accuracy_ci)],
                     [f"{name} macro-F1", _with_ci(metrics.macro_f1, metrics.macro_f1_ci)],
                     [f"{name} majority baseline", _num(metrics.majority_baseline)]]
    if report.needs:
        rows.append([f"needs micro P / R (n={report.needs.n})",
                     f"{report.needs.precision:.2f} / {report.needs.recall:.2f}"])
    if report.risk_flags:
        rows.append([f"risk flags found (n={report.risk_flags.n})",
                     _num(report.risk_flags.recall)])
    if report.legitimacy:
        rows.append([f"legitimacy accuracy (n={report.legitimacy.n})",
                     _num(report.legitimacy.accuracy)])
    rows += [["results with a valid citation", _num(report.grounding["with_valid_citation"])],
             ["latency p50 / p95 (ms)",
              f"{report.latency_ms['p50']} / {report.latency_ms['p95']}"],
             ["tokens / cost", f"{report.tokens['total']} / ${report.cost_usd:.4f}"]]
    return ("<h2>Headline</h2><p class=muted>Intervals: bootstrap 95% over the items.</p>"
            + _table(["metric", "value"], rows))


def _slice_table(values: Mapping[str, Headline]) -> str:
    return _table(["value", "n", "errors", "motive accuracy", "motive macro-F1",
                   "stage accuracy", "stage macro-F1"],
                  [[value, str(h.n), str(h.errors),
                    _with_ci(h.motive_accuracy, h.motive_accuracy_ci),
                    _with_ci(h.motive_macro_f1, h.motive_macro_f1_ci),
                    _with_ci(h.stage_accuracy, h.stage_accuracy_ci),
                    _with_ci(h.stage_macro_f1, h.stage_macro_f1_ci)]
                   for value, h in values.items()])


def _comparison(report: EvaluationReport) -> str:
    comparison = report.comparison
    assert comparison is not None
    rows = []
    for d in comparison.deltas:
        noise = ("" if d.outside_noise is None else
                 _Raw("<span class=yes>yes</span>") if d.outside_noise else "no")
        rows.append([d.metric, _num(d.before), _num(d.after),
                     "" if d.delta is None else f"{d.delta:+.4f}",
                     f"[{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]" if d.ci else "", noise])
    changed = _table(["id", "gold", "before", "after"],
                     [[c["id"], c["gold"], c["before"], c["after"]]
                      for c in comparison.changed[:100]])
    return (f"<h2>Compared with {escape(comparison.before)}</h2><p>Paired bootstrap over the "
            f"{comparison.paired_n} items both runs answered: a delta is outside the noise "
            "when its 95% interval excludes zero.</p>"
            + _table(["metric", comparison.before, comparison.after, "Δ", "paired 95% CI",
                      "outside the noise"], rows)
            + f"<p>{len(comparison.changed)} inputs changed prediction.</p>" + changed)
