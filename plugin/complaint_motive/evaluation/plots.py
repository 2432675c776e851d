"""The evaluation report's PNG plots: confusion matrices and the calibration curve.

Figures are made with matplotlib's object API (``Figure``), never ``pyplot``'s global state,
so an analyst's notebook keeps its own backend. Fonts are shared and matplotlib's text
rendering is not thread-safe, so one lock serialises all drawing here (the warm-up runs in
a thread while an evaluation is under way).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .models import EvaluationReport

_drawing = threading.Lock()
_warm = False  # set once the warm-up has drawn


def write_plots(report: EvaluationReport, folder: Path) -> list[str]:
    """Write the report's PNGs into ``folder``; returns their file names."""
    written = []
    with _drawing:
        for name, metrics in (("motive", report.motive), ("stage", report.stage)):
            if metrics is None:
                continue
            title = (f"{name}: accuracy {metrics.accuracy:.2f}, macro-F1 "
                     f"{metrics.macro_f1:.2f} (n={sum(map(sum, metrics.confusion))})")
            save(confusion_figure(metrics.labels, metrics.confusion, title),
                 folder / f"confusion_{name}.png")
            written.append(f"confusion_{name}.png")
        if report.calibration:
            save(calibration_figure([(b.mean_confidence, b.accuracy, b.n)
                                     for b in report.calibration]), folder / "calibration.png")
            written.append("calibration.png")
    return written


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[int]],
                     title: str) -> Figure:
    """Gold labels down, predictions across; zero cells left blank so the errors stand out."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    wide = len(labels) > 5
    figure = Figure(figsize=(8, 7) if wide else (6, 5))
    # Fixed margins rather than a layout engine: a layout pass costs a second draw, and the
    # report's time counts against the analyzer's (bench/).
    figure.subplots_adjust(left=0.25, bottom=0.25 if wide else 0.3, right=0.97, top=0.93)
    axis = figure.subplots()
    counts = np.array(matrix)
    display = ConfusionMatrixDisplay(confusion_matrix=counts, display_labels=list(labels))
    display.plot(ax=axis, cmap="Blues", colorbar=False, xticks_rotation=45)
    for text, count in zip(display.text_.ravel(), counts.ravel(), strict=True):
        text.set_visible(bool(count))
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    return figure


def calibration_figure(buckets: Sequence[tuple[float, float, int]]) -> Figure:
    """Accuracy against mean confidence, one point per ``(mean confidence, accuracy, n)``
    bucket, beside the diagonal of perfect calibration."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 5))
    figure.subplots_adjust(left=0.13, bottom=0.11, right=0.97, top=0.93)
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.plot([b[0] for b in buckets], [b[1] for b in buckets], "o-", label="motive accuracy")
    for confidence, accuracy, n in buckets:
        axis.annotate(f"n={n}", (confidence, accuracy), textcoords="offset points",
                      xytext=(6, -12), fontsize=8)
    axis.set_xlim(0, 1.08)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("confidence (bucket mean)")
    axis.set_ylabel("accuracy")
    axis.set_title("calibration of the motive confidence")
    axis.legend(loc="upper left")
    return figure


def save(figure: Figure, path: Path | io.BytesIO) -> None:
    # Light compression: about 6% faster to write, and these files are small anyway.
    figure.savefig(path, format="png", dpi=100, pil_kwargs={"compress_level": 1})


def warm_up() -> None:
    """Import matplotlib and draw each kind of figure once, off to the side: the first draw
    loads fonts and caches text layouts, which would otherwise land on the report's time.
    Once per process: a second evaluation finds it done."""
    global _warm
    with _drawing:
        if not _warm:
            save(confusion_figure(["a"] * 10, [[1] * 10] * 10, "warm-up"), io.BytesIO())
            save(calibration_figure([(0.5, 0.5, 1)]), io.BytesIO())
            _warm = True
