"""Retrieval of guidance for a complaint, steered by one rule, and as a LangChain
``BaseRetriever``.

Guidance is written in a trainer's abstract vocabulary and complaints in a customer's
concrete one, so a plain nearest-neighbour search over guidance misses often (bench/ shows
how often). Retrieval is therefore steered: half the slots go to chunks about the offline
classifier's two likeliest motives, the rest to the best plain matches. ``analyze``,
``complaint-motive search`` and ``GuidanceRetriever`` all retrieve through the pipeline's
preparation (``Pipeline.prepare``), so each shows what the model is given for a text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from .corpus import Chunk
from .index import KnowledgeIndex
from .settings import Settings
from .taxonomy import load_taxonomy

if TYPE_CHECKING:
    from .pipeline import Pipeline
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


def retrieve_guidance(pipeline: Pipeline, text: str, k: int = 4, *,
                      motives: Sequence[str] = ()) -> list[Chunk]:
    """The ``k`` guidance chunks the model is given for ``text`` (guarded as ``analyze``
    guards it); ``motives`` pins the motives to favour instead of the classifier's."""
    return pipeline.prepare(text, k=k, motives=motives).chunks


class GuidanceRetriever(BaseRetriever):
    """LangChain retriever over the guidance, steered as ``analyze`` steers it; each
    ``Document`` carries the chunk's metadata and its score.

    >>> retriever = GuidanceRetriever.from_settings(Settings())            # doctest: +SKIP
    >>> retriever.invoke("退款到现在还没到账")[0].metadata["chunk_id"]     # doctest: +SKIP
    'motives-and-purposes#remedy'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    settings: Settings
    """Where the trained classifier is kept, and the guards' limits."""
    k: int = 4
    motives: tuple[str, ...] = ()
    """Favour chunks about these motives; empty: the classifier's likeliest, as in
    ``analyze``."""
    _pipeline: Pipeline | None = PrivateAttr(None)

    @classmethod
    def from_settings(cls, settings: Settings, **fields: object) -> GuidanceRetriever:
        return cls(index=KnowledgeIndex.from_settings(settings), settings=settings,
                   **fields)  # type: ignore[arg-type]

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self._pipeline is None:
            from .pipeline import Pipeline

            self._pipeline = Pipeline(self.settings, self.index)
        return [Document(page_content=c.text, id=c.chunk_id,
                         metadata=c.model_dump(exclude={"text"}))
                for c in retrieve_guidance(self._pipeline, query, self.k,
                                           motives=self.motives)]
