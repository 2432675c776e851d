"""Retrieval of guidance for a complaint, as a LangChain ``BaseRetriever``.

Guidance is written in a trainer's abstract vocabulary and complaints in a customer's
concrete one, so a plain nearest-neighbour search over guidance misses often (bench/ shows
how often). The retriever therefore looks first at the labelled exemplars nearest to the
complaint — complaint against complaint, where similarity works — and lets their motives
steer the guidance search: chunks about the neighbours' leading motives come first, then
the best unfiltered matches.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from .index import KnowledgeIndex, RetrievedChunk, RetrievedExemplar
from .taxonomy import load_taxonomy


def motive_votes(neighbours: Sequence[RetrievedExemplar]) -> list[tuple[str, float]]:
    """Neighbours' motives weighted by similarity, as shares summing to 1, best first."""
    votes: dict[str, float] = {}
    for neighbour in neighbours:
        votes[neighbour.motive] = votes.get(neighbour.motive, 0.0) + max(neighbour.score, 0.0)
    total = sum(votes.values()) or 1.0
    return sorted(((m, w / total) for m, w in votes.items()), key=lambda pair: -pair[1])


def steer(candidates: Sequence[RetrievedChunk], k: int, motives: Sequence[str],
          ) -> list[RetrievedChunk]:
    """Pick ``k`` chunks from ``candidates`` (best first): half the slots for chunks about
    ``motives`` (split between them, in order), the rest for the best of the others."""
    favoured_slots = max(1, k // 2) if motives else 0
    chosen: dict[str, RetrievedChunk] = {}
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


def retrieve_guidance(index: KnowledgeIndex, text: str, k: int = 4, *,
                      neighbours: Sequence[RetrievedExemplar] | None = None,
                      motives: Sequence[str] = (), hint_motives: int = 2,
                      ) -> list[RetrievedChunk]:
    """The ``k`` guidance chunks for ``text``.

    ``motives`` pins the motives to favour (e.g. an analyzer's prediction); otherwise the
    leading motives among the nearest exemplars (``neighbours``, looked up when not given)
    are used. Half the slots go to favoured motives, the rest to the best plain matches.
    """
    vector = index.embed([text])
    if not motives:
        if neighbours is None:
            neighbours = index.similar_exemplars_many(vector, 8)[0]
        taxonomy = load_taxonomy()
        motives = [m for m, _ in motive_votes(neighbours) if taxonomy.is_motive(m)
                   ][:hint_motives]
    candidates = index.search_many(vector, candidate_pool(index, k))[0]
    return steer(candidates, k, motives)


class GuidanceRetriever(BaseRetriever):
    """LangChain retriever over the guidance; each ``Document`` carries the chunk's metadata
    and its score.

    >>> retriever = GuidanceRetriever(index=KnowledgeIndex.from_settings())  # doctest: +SKIP
    >>> retriever.invoke("退款到现在还没到账")[0].metadata["chunk_id"]     # doctest: +SKIP
    'motives-and-purposes#remedy'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    k: int = 4
    motives: tuple[str, ...] = ()
    """Favour chunks about these motives; empty: let the nearest exemplars decide."""

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content=c.text, id=c.chunk_id,
                         metadata=c.model_dump(exclude={"text"}))
                for c in retrieve_guidance(self.index, query, self.k, motives=self.motives)]
