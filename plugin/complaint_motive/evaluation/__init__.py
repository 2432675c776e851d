"""Evaluation: a labelled set in; metrics, per-item predictions, a report and plots out.

Metrics come from scikit-learn. A prediction of one of an item's ``alt_motives`` (motives a
careful annotator would also accept) counts as correct, and the report says how many were
counted that way. Accuracy and macro-F1 carry bootstrap 95% confidence intervals (resampled
items, a fixed seed so a report is reproducible); a comparison of two runs resamples the
same items in both (paired) to say which differences are outside the noise.

The rooms: ``models`` (the report's JSON), ``datasets`` (reading labelled sets),
``metrics`` (the figures), ``run`` (``evaluate``), ``markdown`` / ``html`` / ``plots``
(what a person reads), ``compare`` (two runs).
"""

from .compare import compare_reports
from .models import EvaluationReport, FieldMap, Prediction
from .run import aevaluate, evaluate

__all__ = ["EvaluationReport", "FieldMap", "Prediction", "aevaluate", "compare_reports",
           "evaluate"]
