"""One shallow family of errors: catch ``ComplaintMotiveError`` or the branch you care about.

Every message says what happened and what to do about it; none carries complaint text.
"""

from __future__ import annotations

from typing import Any


class ComplaintMotiveError(Exception):
    """Base of every error this library raises on purpose."""

    #: A stable machine-readable name, used in batch outputs and HTTP problem responses.
    kind: str = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": type(self).__name__, "message": self.message,
                **({"details": self.details} if self.details else {})}


class InputError(ComplaintMotiveError, ValueError):
    """The complaint (or a batch line) cannot be analysed as given."""

    kind = "input"


class ConfigurationError(ComplaintMotiveError):
    """Settings, the corpus or the index are missing or inconsistent."""

    kind = "configuration"


class IndexStoreError(ConfigurationError):
    """The Chroma index is unreachable, corrupted or built by an incompatible version."""

    kind = "index"


class BackendError(ComplaintMotiveError):
    """The LLM endpoint failed: timeout, connection, rate limit, server error, refusal."""

    kind = "backend"


class ContentFilterError(BackendError):
    """The provider's content filter blocked the prompt or the answer (Azure OpenAI answers
    400 ``content_filter`` on the prompt, ``finish_reason: content_filter`` on the answer).

    Abusive and threatening complaints are normal input here: the endpoint is healthy, so
    this never counts toward the circuit breaker, and ``fallback="offline"`` answers
    instead."""

    kind = "content_filter"


class BackendUnavailable(BackendError):
    """The endpoint has failed repeatedly; calls are short-circuited for a while."""

    kind = "backend_unavailable"


class OutputValidationError(ComplaintMotiveError):
    """The model's answer stayed invalid after the re-ask (schema, labels, quotes, citations,
    or a reply that breaks policy)."""

    kind = "validation"


class OutputTruncatedError(OutputValidationError):
    """The model's answer was cut off at the output bound (``finish_reason=length``) on
    every attempt: raise ``max_tokens``."""

    kind = "truncated"


class DegenerateAnswerError(OutputValidationError):
    """The model's answer was valid and still no answer after the re-ask: label lists that
    are the schema's first values, evidence that is always the opening clauses, a reply
    copied from the prompt, the guidance, an exemplar or the complaint, or a looping text
    (``details["degenerate"]`` names which). A model too small for the task: the offline
    analyzer answers instead under ``fallback="offline"``."""

    kind = "degenerate"
