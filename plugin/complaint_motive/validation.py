"""Checks on a backend's answer that its schema cannot express.

Each problem is a sentence addressed to the model: the LLM chain sends them back once as
the re-ask; the offline analyzer's answers pass through the same checks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection

from .guards import reply_violations
from .schema import ModelAnswer


def _squash(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split()).lower()


def quote_found(quote: str, text: str) -> bool:
    """Whether an evidence quote really occurs in the complaint (ignoring width, spaces and
    quotation marks around it; a quote that is only quotation marks is taken as it is)."""
    squashed = _squash(quote)
    folded = squashed.strip("\"'“”‘’「」") or squashed
    return bool(folded) and folded in _squash(text)


def answer_problems(answer: ModelAnswer, complaint: str, retrieved: Collection[str], *,
                    max_promised_amount: float = 0.0) -> list[str]:
    """Everything wrong with ``answer`` for this complaint and these retrieved chunk ids."""
    problems: list[str] = []
    for name in ("primary_confidence", "stage_confidence"):
        value = getattr(answer, name)
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1, not {value}")
    for field in ("primary_evidence", "stage_evidence"):
        missing = [q for q in getattr(answer, field) if not quote_found(q, complaint)]
        if missing:
            problems.append(f"{field}: these are not verbatim quotes from the complaint: "
                            f"{missing[:3]}; quote the complaint's exact words")
    if answer.primary_motive in answer.secondary_motives:
        problems.append("secondary_motives must not repeat the primary motive")
    if len(answer.secondary_motives) > 2:
        problems.append("give at most two secondary_motives")
    if not answer.citations:
        problems.append("cite at least one guidance chunk id in citations")
    invented = [c for c in answer.citations if c not in retrieved]
    if invented:
        problems.append(f"citations {invented[:3]} are not among the guidance chunks given; "
                        f"cite only these ids: {sorted(retrieved)}")
    if not answer.reply.strip():
        problems.append("reply must not be empty")
    for violation in reply_violations(answer.reply, max_promised_amount=max_promised_amount):
        problems.append(f"the reply breaks policy ({violation}); rewrite it without that")
    return problems
