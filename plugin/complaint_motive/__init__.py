"""complaint-motive: why a customer complains, where they stand, and what to say.

>>> from complaint_motive import MotiveAnalyzer          # doctest: +SKIP
>>> result = MotiveAnalyzer.from_settings().analyze("快递丢了,你们说怎么赔吧")  # doctest: +SKIP
>>> result.primary_motive.id, result.stage.id          # doctest: +SKIP
('compensation', 'voiced_grievance')

Heavy modules (Chroma, scikit-learn, LangChain's OpenAI client) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    BackendUnavailable,
    ComplaintMotiveError,
    ConfigurationError,
    ContentFilterError,
    DegenerateAnswerError,
    IndexStoreError,
    InputError,
    OutputTruncatedError,
    OutputValidationError,
)

if TYPE_CHECKING:
    from .analysis.schema import MotiveAnalysis
    from .analyzer import MotiveAnalyzer, Outcome
    from .evaluation.run import EvaluationReport, FieldMap, evaluate
    from .knowledge.index import KnowledgeIndex
    from .settings import Settings
    from .surfaces.retriever import GuidanceRetriever

__version__ = "0.1.0"

_LAZY = {
    "MotiveAnalyzer": "analyzer", "Outcome": "analyzer", "MotiveAnalysis": "analysis.schema",
    "Settings": "settings", "KnowledgeIndex": "knowledge.index",
    "GuidanceRetriever": "surfaces.retriever",
    "evaluate": "evaluation", "EvaluationReport": "evaluation", "FieldMap": "evaluation",
}

__all__ = [
    "BackendError", "BackendUnavailable", "ComplaintMotiveError", "ConfigurationError",
    "ContentFilterError", "DegenerateAnswerError", "EvaluationReport", "FieldMap",
    "GuidanceRetriever", "IndexStoreError", "InputError",
    "KnowledgeIndex", "MotiveAnalysis", "MotiveAnalyzer", "Outcome",
    "OutputTruncatedError", "OutputValidationError", "Settings", "evaluate",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
