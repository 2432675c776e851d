"""The Chroma knowledge index: guidance chunks and labelled exemplars, one collection each.

A collection is named by what it holds, the embedding model and the content version
(``cm-guidance-hash-char13-2048-<version>``), so Chroma never mixes vector spaces and a
reader never sees a half-built index: a new version is built beside the old one, flagged
``complete`` only at the end, and embeddings of unchanged records are copied across rather
than computed again. Builders on one machine take a file lock.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict

from ..errors import IndexStoreError
from .corpus import Chunk, chunk_guidance, corpus_version
from .embeddings import embedding_model_name, embeddings_from_settings
from .exemplar_set import ExemplarSet
from .exemplars import LabelledComplaint
from .taxonomy import load_taxonomy

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from ..settings import Settings

log = logging.getLogger(__name__)

#: Bump when the shape of what is stored per record changes.
STORE_SCHEMA = "1"
#: Bump when what is embedded for a guidance chunk changes (see ``guidance_embed_text``).
GUIDANCE_RECIPE = "section+text+motive-cues/1"
_BATCH = 256
_KINDS = ("guidance", "exemplars")


#: The former name of a retrieved chunk: one class, ``corpus.Chunk``, now serves both.
RetrievedChunk = Chunk


class RetrievedExemplar(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    score: float
    text: str
    motive: str
    stage: str | None


@dataclass(frozen=True)
class _Record:
    id: str
    document: str
    embed_text: str
    metadata: dict[str, Any]

    @property
    def digest(self) -> str:
        # Only the embedded text decides the vector; metadata is rewritten on every build.
        return hashlib.sha256(self.embed_text.encode()).hexdigest()[:16]


@dataclass
class BuildReport:
    """What one ``ensure`` did to one collection."""

    kind: str
    collection: str
    records: int
    embedded: int = 0
    reused: int = 0
    built: bool = False
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)


class KnowledgeIndex:
    """Guidance and exemplars in Chroma, embedded or on a server.

    >>> index = KnowledgeIndex.from_settings()            # doctest: +SKIP
    >>> index.search("快递三天没到,到底在哪", k=4)[0].chunk_id  # doctest: +SKIP
    'motive-identification#ecommerce-case'
    """

    def __init__(self, client: ClientAPI, embeddings: Embeddings, *,
                 lock_path: Path | None = None,
                 exemplars: Sequence[LabelledComplaint] | None = None,
                 local_exemplars: Path | None = None) -> None:
        self.client = client
        self.embeddings = embeddings
        self.model_slug = re.sub(r"[^a-zA-Z0-9.-]+", "-", embedding_model_name(embeddings))
        self._lock_path = lock_path
        self.exemplar_set = ExemplarSet(exemplars, local=local_exemplars)
        self._collections: dict[str, Collection] = {}
        self._versions: dict[str, str] | None = None
        self._guidance_count: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      embeddings: Embeddings | None = None) -> KnowledgeIndex:
        """An embedded ``PersistentClient`` in ``settings.index_dir``, or an ``HttpClient``
        when ``settings.chroma_host`` is set."""
        from ..settings import Settings

        settings = settings or Settings()
        return cls(open_client(settings), embeddings or embeddings_from_settings(settings),
                   lock_path=None if settings.chroma_host else settings.index_dir / ".build.lock",
                   local_exemplars=settings.local_exemplars)

    # -- building --------------------------------------------------------------------------

    @property
    def exemplars(self) -> list[LabelledComplaint]:
        """The bundled exemplars plus the local ones (imported corrections)."""
        return self.exemplar_set.items

    def versions(self) -> dict[str, str]:
        """The content version each collection must have."""
        if self._versions is None:
            self._versions = self._compute_versions()
        return self._versions

    def _compute_versions(self) -> dict[str, str]:
        guidance = hashlib.sha256(f"{corpus_version()}/{GUIDANCE_RECIPE}".encode()).hexdigest()
        return {"guidance": guidance[:16], "exemplars": self.exemplar_set.version}

    def ensure(self, *, rebuild: bool = False) -> list[BuildReport]:
        """Build what is missing or out of date; a no-op when everything is current."""
        versions = self.versions()
        started = time.perf_counter()
        if not rebuild:
            adopted = [report for kind in _KINDS
                       if (report := self._adopt(kind, self._name(kind, versions[kind]),
                                                 started))]
            if len(adopted) == len(_KINDS):
                return adopted
        # One lock for both collections: a builder finishes the whole index before another
        # looks, so each process sees either everything built or nothing.
        with self._lock():
            return [self._ensure(kind, versions[kind], rebuild) for kind in _KINDS]

    def _records(self, kind: str) -> list[_Record]:
        if kind == "guidance":
            return [_guidance_record(c) for c in chunk_guidance()]
        return [_exemplar_record(e) for e in self.exemplars]

    def is_current(self) -> bool:
        """Whether every collection is already built for the current corpus (nothing for
        ``ensure`` to do)."""
        versions = self.versions()
        return all(self._complete(self._name(kind, versions[kind])) is not None
                   for kind in _KINDS)

    def _name(self, kind: str, version: str) -> str:
        return f"cm-{kind}-{self.model_slug}-{version}"

    def _ensure(self, kind: str, version: str, rebuild: bool) -> BuildReport:
        """Under the build lock: adopt the collection if another builder finished it while
        we waited, else build it."""
        name = self._name(kind, version)
        started = time.perf_counter()
        if not rebuild and (adopted := self._adopt(kind, name, started)):
            return adopted
        report = self._build(kind, name, self._records(kind))
        report.seconds = time.perf_counter() - started
        return report

    def _adopt(self, kind: str, name: str, started: float) -> BuildReport | None:
        """Use the complete collection ``name`` if there is one."""
        collection = self._complete(name)
        if collection is None:
            return None
        self._collections[kind] = collection
        self._guidance_count = None
        return BuildReport(kind, name, collection.count(), seconds=time.perf_counter() - started)

    def _build(self, kind: str, name: str, records: list[_Record]) -> BuildReport:
        prefix = f"cm-{kind}-{self.model_slug}-"
        siblings = [c for c in self._list() if c.name.startswith(prefix) and c.name != name]
        previous = max((c for c in siblings if (c.metadata or {}).get("complete")),
                       key=lambda c: (c.metadata or {}).get("built_at", 0), default=None)
        with _store_errors("build the index"):
            if any(c.name == name for c in self._list()):
                self.client.delete_collection(name)  # a half-built or forced rebuild
            collection = self.client.create_collection(
                name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
                metadata={"complete": False, "schema": STORE_SCHEMA, "kind": kind})
            reusable = _reusable_embeddings(previous, records)
            fresh = [r for r in records if r.id not in reusable]
            vectors = self.embeddings.embed_documents([r.embed_text for r in fresh])
            embedded = dict(zip((r.id for r in fresh), vectors, strict=True))
            for start in range(0, len(records), _BATCH):
                batch = records[start:start + _BATCH]
                collection.add(
                    ids=[r.id for r in batch], documents=[r.document for r in batch],
                    metadatas=[{**r.metadata, "digest": r.digest} for r in batch],
                    embeddings=[reusable.get(r.id) or embedded[r.id]  # type: ignore[arg-type]
                                for r in batch])
            collection.modify(metadata={"complete": True, "schema": STORE_SCHEMA, "kind": kind,
                                        "built_at": time.time()})
            # Keep the version readers may still hold; drop anything older.
            removed = [c.name for c in siblings if previous is None or c.name != previous.name]
            for old in removed:
                self.client.delete_collection(old)
        self._collections[kind] = collection
        self._guidance_count = None
        log.info("built %s: %d records, %d embedded", name, len(records), len(fresh))
        return BuildReport(kind, name, len(records), embedded=len(fresh),
                           reused=len(records) - len(fresh), built=True, removed=removed)

    def _complete(self, name: str) -> Collection | None:
        with _store_errors("open the index"):
            for collection in self._list():
                if collection.name != name:
                    continue
                meta = collection.metadata or {}
                if meta.get("schema") != STORE_SCHEMA:
                    log.warning("index %s was written by another version; rebuilding", name)
                    return None
                return collection if meta.get("complete") else None
        return None

    def _list(self) -> list[Collection]:
        return list(self.client.list_collections())

    def _lock(self) -> AbstractContextManager[object]:
        if self._lock_path is None:
            return nullcontext()
        from filelock import FileLock

        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self._lock_path), timeout=300)

    def _collection(self, kind: str) -> Collection:
        if kind not in self._collections:
            self.ensure()
        return self._collections[kind]

    # -- querying ------------------------------------------------------------------------
    # Batch-first: one embedding call and one Chroma query serve a whole batch of texts;
    # the single-text methods are the batch of one.

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embeddings.embed_documents(list(texts))

    def search(self, text: str, k: int = 4, *, motives: Sequence[str] = (),
               stages: Sequence[str] = ()) -> list[Chunk]:
        """The ``k`` guidance chunks nearest to ``text``, best first, optionally only those
        about any of ``motives`` / ``stages``."""
        return self.search_many(self.embed([text]), k, motives=motives, stages=stages)[0]

    def search_many(self, vectors: list[list[float]], k: int, *, motives: Sequence[str] = (),
                    stages: Sequence[str] = ()) -> list[list[Chunk]]:
        where = _any_of({"motives": motives, "stages": stages})
        return [[Chunk(
            chunk_id=i, score=s, text=d, source=m["source_file"], title=m["title"],
            section=m["section"], ref=m["ref"], motives=tuple(m.get("motives", ())),
            stages=tuple(m.get("stages", ()))) for i, s, d, m in rows]
            for rows in self._query("guidance", vectors, k, where)]

    def similar_exemplars(self, text: str, k: int = 8) -> list[RetrievedExemplar]:
        return self.similar_exemplars_many(self.embed([text]), k)[0]

    def similar_exemplars_many(self, vectors: list[list[float]],
                               k: int = 8) -> list[list[RetrievedExemplar]]:
        return [[RetrievedExemplar(id=i, score=s, text=d, motive=m["motive"],
                                   stage=m.get("stage")) for i, s, d, m in rows]
                for rows in self._query("exemplars", vectors, k, None)]

    def guidance_count(self) -> int:
        # Asked on every preparation; a collection's size only changes when it is rebuilt.
        if self._guidance_count is None:
            self._guidance_count = self._collection("guidance").count()
        return self._guidance_count

    def _query(self, kind: str, vectors: list[list[float]], k: int,
               where: dict[str, Any] | None,
               ) -> list[list[tuple[str, float, str, dict[str, Any]]]]:
        if not vectors:
            return []
        collection = self._collection(kind)
        with _store_errors("query the index"):
            found = collection.query(query_embeddings=vectors, n_results=k,  # type: ignore[arg-type]
                                     where=where, include=["documents", "metadatas",
                                                           "distances"])
        return [[(i, round(1.0 - float(dist), 4), doc, dict(meta or {}))
                 for i, doc, meta, dist in zip(ids, docs, metas, dists, strict=True)]
                for ids, docs, metas, dists in zip(
                    found["ids"], found["documents"] or [], found["metadatas"] or [],
                    found["distances"] or [], strict=True)]


def open_client(settings: Settings) -> ClientAPI:
    """A Chroma client for the settings, with telemetry off (this machine has no internet)."""
    import chromadb
    from filelock import FileLock

    chroma_settings = chromadb.Settings(anonymized_telemetry=False)
    with _store_errors("connect to Chroma"):
        if settings.chroma_host:
            client: ClientAPI = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl,
                settings=chroma_settings)
        else:
            settings.index_dir.mkdir(parents=True, exist_ok=True)
            # Chroma creates its tables on first open; two processes doing that at once race.
            with FileLock(str(settings.index_dir / ".build.lock"), timeout=300):
                client = chromadb.PersistentClient(path=str(settings.index_dir),
                                                   settings=chroma_settings)
    return client


def move_aside(folder: Path) -> Path:
    """Rename a damaged index folder (kept for inspection, never deleted) so a fresh one can
    be built in its place."""
    from chromadb.api.shared_system_client import SharedSystemClient

    aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    # Chroma caches one client per path in the process; the cached one is the broken one.
    SharedSystemClient.clear_system_cache()
    return aside


def guidance_embed_text(chunk: Chunk, *, with_cues: bool = True) -> str:
    """What is embedded for a chunk: its section path and text, plus the cue phrases of the
    motives it is about. Guidance is abstract and complaints are concrete; the cues are the
    bridge between the two vocabularies (bench/embedding_candidates.py measures the gain)."""
    parts = [chunk.section, chunk.text]
    if with_cues:
        taxonomy = load_taxonomy()
        for motive_id in chunk.motives:
            motive = taxonomy.motive(motive_id)
            parts.append(" ".join((motive.zh, motive.en, *motive.cues)))
    return "\n".join(parts)


def _guidance_record(chunk: Chunk) -> _Record:
    meta: dict[str, Any] = {"document": chunk.document, "title": chunk.title,
                            "source_file": chunk.source, "section": chunk.section,
                            "ref": chunk.ref}
    if chunk.motives:
        meta["motives"] = list(chunk.motives)
    if chunk.stages:
        meta["stages"] = list(chunk.stages)
    return _Record(chunk.chunk_id, chunk.text, guidance_embed_text(chunk), meta)


def _exemplar_record(item: LabelledComplaint) -> _Record:
    meta: dict[str, Any] = {"motive": item.motive.value}
    if item.stage is not None:
        meta["stage"] = item.stage.value
    return _Record(item.id, item.text, item.text, meta)


def _reusable_embeddings(previous: Collection | None,
                         records: list[_Record]) -> dict[str, list[float]]:
    if previous is None:
        return {}
    wanted = {r.id: r.digest for r in records}
    old = previous.get(ids=list(wanted), include=["metadatas", "embeddings"])
    embeddings = old["embeddings"] if old["embeddings"] is not None else []
    return {i: list(map(float, e)) for i, m, e in
            zip(old["ids"], old["metadatas"] or [], embeddings, strict=True)
            if m and m.get("digest") == wanted[i]}


def _any_of(filters: dict[str, Sequence[str]]) -> dict[str, Any] | None:
    clauses = [{key: {"$contains": value}} for key, values in filters.items() for value in values]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


@contextmanager
def _store_errors(doing: str) -> Iterator[None]:
    """Turn Chroma's exceptions into ``IndexStoreError`` saying what we were doing."""
    try:
        yield
    except IndexStoreError:
        raise
    except Exception as error:
        raise IndexStoreError(
            f"could not {doing}: {type(error).__name__}: {error}. If the index folder is "
            "damaged, run `complaint-motive index --rebuild`.") from error
