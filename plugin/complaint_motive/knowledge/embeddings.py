"""Embeddings behind LangChain's ``Embeddings`` interface.

The default needs no model download: character n-grams hashed into a fixed-size vector.
Chinese has no spaces, so character n-grams carry most of what word tokens would, and the
hashing keeps the vector space stable without fitting anything (see bench/ for the
measurements that chose it). An OpenAI-compatible embeddings endpoint can replace it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from ..settings import Settings

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Fold width and case, and turn punctuation into spaces."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


class HashingEmbeddings(Embeddings):
    """Character n-gram feature hashing; deterministic, offline, about 0.1 ms a text.

    >>> vector = HashingEmbeddings().embed_query("快递三天没到")
    >>> len(vector)
    2048
    """

    def __init__(self, dimensions: int = 2048, ngram_range: tuple[int, int] = (1, 3)) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dimensions = dimensions
        self.ngram_range = ngram_range
        self._vectorizer = HashingVectorizer(
            analyzer="char_wb", ngram_range=ngram_range, n_features=dimensions,
            alternate_sign=False, norm="l2", preprocessor=normalize, dtype="float32")

    @property
    def model_name(self) -> str:
        low, high = self.ngram_range
        return f"hash-char{low}{high}-{self.dimensions}"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._vectorizer.transform(texts).toarray().tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def embedding_model_name(embeddings: Embeddings) -> str:
    """A name that changes whenever the vector space does (it names the Chroma collection)."""
    name = getattr(embeddings, "model_name", None) or getattr(embeddings, "model", None)
    return str(name or type(embeddings).__name__)


def embeddings_from_settings(settings: Settings) -> Embeddings:
    """The configured embeddings: local hashing by default, or an OpenAI-compatible endpoint."""
    if settings.embedding_provider == "openai":
        from langchain_openai import OpenAIEmbeddings

        return OpenAIEmbeddings(  # type: ignore[call-arg]
            model=settings.embedding_model,
            base_url=settings.embedding_base_url or settings.openai_base_url,
            api_key=settings.embedding_api_key or settings.openai_api_key,
            # tiktoken would download its encodings; send raw text instead.
            tiktoken_enabled=False, check_embedding_ctx_length=False,
        )
    return HashingEmbeddings(dimensions=settings.embedding_dimensions)
