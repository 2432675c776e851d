"""Embeddings from an OpenAI-compatible endpoint (a loopback server), instead of the local
hashing embedding: its own collections, the same retrieval."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from complaint_motive.knowledge.embeddings import HashingEmbeddings
from complaint_motive.knowledge.index import KnowledgeIndex
from complaint_motive.settings import Settings

SEEN: list[dict] = []


class EmbeddingsHandler(BaseHTTPRequestHandler):
    """Answers POST /v1/embeddings like a real endpoint, with a deterministic model."""

    model = HashingEmbeddings(dimensions=256)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        SEEN.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = self.model.embed_documents([str(t) for t in texts])
        payload = json.dumps({"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_index_and_search_with_an_embeddings_endpoint(embeddings_url: str,
                                                      tmp_path: Path) -> None:
    SEEN.clear()
    settings = Settings(index_dir=tmp_path / "ix", embedding_provider="openai",
                        embedding_model="bge-m3", embedding_base_url=embeddings_url,
                        embedding_api_key="emb-key")
    index = KnowledgeIndex.from_settings(settings)
    reports = index.ensure()
    assert all(r.built for r in reports)
    assert all("-bge-m3-" in r.collection for r in reports)  # named by embedding model
    hits = index.search("汇款失败手续费被扣了", 3)
    assert len(hits) == 3
    assert SEEN[0]["path"] == "/v1/embeddings" and SEEN[0]["model"] == "bge-m3"
    assert SEEN[0]["auth"] == "Bearer emb-key"
    # Raw text is sent (no tiktoken, which would try to download its encodings).
    assert isinstance(SEEN[-1]["input"][0], str)
    hashed = KnowledgeIndex.from_settings(Settings(index_dir=tmp_path / "ix")).ensure()
    assert {r.collection for r in hashed}.isdisjoint({r.collection for r in reports})
