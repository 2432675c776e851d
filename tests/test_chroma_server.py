"""Server mode: a real `chroma run` on loopback, shared by several workers."""

from __future__ import annotations

from pathlib import Path

from complaint_motive import MotiveAnalyzer
from complaint_motive.knowledge.index import KnowledgeIndex
from complaint_motive.settings import Settings


def test_index_and_analyse_against_a_chroma_server(chroma_port: int, tmp_path: Path) -> None:
    settings = Settings(chroma_host="127.0.0.1", chroma_port=chroma_port,
                        index_dir=tmp_path / "local", backend="offline")
    first = KnowledgeIndex.from_settings(settings)
    assert [r.built for r in first.ensure()] == [True, True]

    # A second worker (another client) finds the index built and shares it.
    worker = MotiveAnalyzer(settings)
    assert [r.built for r in worker.index.ensure()] == [False, False]
    result = worker.analyze("汇款失败手续费被扣了,我要求退还手续费")
    assert result.primary_motive.id == "compensation"
    assert result.citations
    # Nothing was written to an embedded store on this machine.
    assert not (tmp_path / "local" / "chroma.sqlite3").exists()
