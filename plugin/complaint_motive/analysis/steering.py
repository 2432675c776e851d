"""The steering rule: which guidance chunks a complaint is given.

Guidance is written in a trainer's abstract vocabulary and complaints in a customer's
concrete one, so a plain nearest-neighbour search over guidance misses often (bench/ shows
how often). Retrieval is therefore steered: half the slots go to chunks about the offline
classifier's two likeliest motives, the rest to the best plain matches. ``analyze``,
``complaint-motive search`` and ``GuidanceRetriever`` (``surfaces.retriever``) all retrieve
through the pipeline's preparation, so each shows what the model is given for a text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..knowledge.corpus import Chunk
from ..knowledge.index import KnowledgeIndex
from ..knowledge.taxonomy import load_taxonomy

if TYPE_CHECKING:
    from .signals import Signals

#: How many of the classifier's likeliest motives steer retrieval.
STEERING_MOTIVES = 2


def steering_motives(signals: Signals, count: int = STEERING_MOTIVES) -> list[str]:
    """The steering rule: the classifier's likeliest real motives (not ``unknown`` or
    ``not_a_complaint``), best first."""
    taxonomy = load_taxonomy()
    return [a.id for a in signals.motives if taxonomy.is_motive(a.id)][:count]


def steer(candidates: Sequence[Chunk], k: int, motives: Sequence[str],
          ) -> list[Chunk]:
    """Pick ``k`` chunks from ``candidates`` (best first): half the slots for chunks about
    ``motives`` (split between them, in order), the rest for the best of the others."""
    favoured_slots = max(1, k // 2) if motives else 0
    chosen: dict[str, Chunk] = {}
    for rank, motive in enumerate(motives):
        quota = (favoured_slots - len(chosen) if rank == len(motives) - 1
                 else max(1, favoured_slots // len(motives)))
        for chunk in [c for c in candidates if motive in c.motives][:quota]:
            chosen.setdefault(chunk.chunk_id, chunk)
    for chunk in candidates:
        if len(chosen) >= k:
            break
        chosen.setdefault(chunk.chunk_id, chunk)
    return sorted(chosen.values(), key=lambda c: -c.score)[:k]


def candidate_pool(index: KnowledgeIndex, k: int) -> int:
    """How many nearest chunks to fetch so steering can find chunks about any motive."""
    return min(index.guidance_count(), max(8 * k, 24))
