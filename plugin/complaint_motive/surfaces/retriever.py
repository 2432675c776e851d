"""Guidance retrieval as a surface: ``retrieve_guidance`` and LangChain's
``BaseRetriever``, both through the pipeline's preparation, so they return what ``analyze``
gives the model for a text (guarded, steered by the same rule)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr

from ..analysis.pipeline import Pipeline
from ..knowledge.corpus import Chunk
from ..knowledge.index import KnowledgeIndex
from ..settings import Settings


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
            self._pipeline = Pipeline(self.settings, self.index)
        return [Document(page_content=c.text, id=c.chunk_id,
                         metadata=c.model_dump(exclude={"text"}))
                for c in retrieve_guidance(self._pipeline, query, self.k,
                                           motives=self.motives)]
