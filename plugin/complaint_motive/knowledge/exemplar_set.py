"""The exemplar set in use: the bundled labelled complaints plus the local ones (agent
corrections imported with ``complaint-motive exemplars import-corrections``), its content
version, and how the nearest of them vote on a complaint's motive.

The set is what the index embeds for neighbour search, what the offline classifier is
trained on, and what the LLM is shown as few-shot examples; its version names the index
collection and the trained model, so a change to either file rebuilds both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .exemplars import LabelledComplaint, load_exemplars

if TYPE_CHECKING:
    from .index import RetrievedExemplar


class ExemplarSet:
    """The bundled exemplars and, when the file exists, the local ones; read on first use.

    >>> ExemplarSet().version                                  # doctest: +SKIP
    '3f2a9c0d1e4b5a67'
    """

    def __init__(self, items: Sequence[LabelledComplaint] | None = None, *,
                 local: Path | None = None) -> None:
        self._items = list(items) if items is not None else None
        self._local = local
        self._version: str | None = None

    @property
    def items(self) -> list[LabelledComplaint]:
        if self._items is None:
            local = self._local
            self._items = load_exemplars() + (
                load_exemplars(local) if local is not None and local.exists() else [])
        return self._items

    @property
    def version(self) -> str:
        """A digest of every exemplar as stored: any edit, addition or removal changes it."""
        if self._version is None:
            self._version = hashlib.sha256("\n".join(
                e.model_dump_json() for e in self.items).encode()).hexdigest()[:16]
        return self._version


def motive_votes(neighbours: Sequence[RetrievedExemplar]) -> list[tuple[str, float]]:
    """Neighbours' motives weighted by similarity, as shares summing to 1, best first."""
    votes: dict[str, float] = {}
    for neighbour in neighbours:
        votes[neighbour.motive] = votes.get(neighbour.motive, 0.0) + max(neighbour.score, 0.0)
    total = sum(votes.values()) or 1.0
    return sorted(((m, w / total) for m, w in votes.items()), key=lambda pair: -pair[1])
