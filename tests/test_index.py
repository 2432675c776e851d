"""The Chroma index: built offline, idempotent, incremental, never mixing vector spaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from complaint_motive.analysis.pipeline import Pipeline
from complaint_motive.knowledge.embeddings import HashingEmbeddings
from complaint_motive.knowledge.exemplars import load_exemplars
from complaint_motive.knowledge.index import KnowledgeIndex, open_client
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app
from complaint_motive.surfaces.retriever import GuidanceRetriever, retrieve_guidance


def test_build_is_idempotent_and_incremental(tmp_path: Path) -> None:
    exemplars = load_exemplars()
    settings = Settings(index_dir=tmp_path / "ix")
    first = KnowledgeIndex(open_client(settings), HashingEmbeddings(), exemplars=exemplars)
    reports = first.ensure()
    assert [r.built for r in reports] == [True, True]
    assert reports[1].embedded == len(exemplars)

    again = KnowledgeIndex(open_client(settings), HashingEmbeddings(), exemplars=exemplars)
    assert [r.built for r in again.ensure()] == [False, False]

    changed = [*exemplars[:-1], exemplars[-1].model_copy(update={"text": "一条新的例子"})]
    updated = KnowledgeIndex(open_client(settings), HashingEmbeddings(), exemplars=changed)
    report = updated.ensure()[1]
    assert report.built and report.embedded == 1 and report.reused == len(exemplars) - 1
    assert updated.similar_exemplars("一条新的例子", 1)[0].text == "一条新的例子"


def test_another_embedding_model_gets_its_own_collection(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "ix")
    small = KnowledgeIndex(open_client(settings), HashingEmbeddings(dimensions=512))
    large = KnowledgeIndex(open_client(settings), HashingEmbeddings(dimensions=1024))
    names = {small.ensure()[0].collection, large.ensure()[0].collection}
    assert len(names) == 2
    assert len(small.search("退款", 2)) == 2 and len(large.search("退款", 2)) == 2


def test_half_built_collection_is_rebuilt(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "ix")
    index = KnowledgeIndex.from_settings(settings)
    name = index.ensure()[0].collection
    collection = index.client.get_collection(name)
    collection.modify(metadata={"complete": False, "schema": "1", "kind": "guidance"})
    fresh = KnowledgeIndex.from_settings(settings)
    assert fresh.ensure()[0].built is True


def test_search_filters_by_motive(settings: Settings) -> None:
    index = KnowledgeIndex.from_settings(settings)
    hits = index.search("不给就曝光", k=3, motives=["leverage"])
    assert hits and all("leverage" in h.motives for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_retriever_is_a_langchain_retriever(settings: Settings) -> None:
    retriever = GuidanceRetriever.from_settings(settings, k=3)
    documents = retriever.invoke("汇款失败手续费被扣了,我要退钱")
    assert len(documents) == 3
    assert {"chunk_id", "score", "section", "motives"} <= set(documents[0].metadata)
    assert any("compensation" in d.metadata["motives"] for d in documents)


def test_steered_retrieval_favours_the_given_motive(settings: Settings) -> None:
    index = KnowledgeIndex.from_settings(settings)
    text = "我有截图为证,明明是你们的错"
    plain = index.search(text, 2)
    steered = retrieve_guidance(Pipeline(settings, index), text, 2, motives=["revenge"])
    assert not any("revenge" in c.motives for c in plain)
    assert any("revenge" in c.motives for c in steered) and len(steered) == 2
    assert steered == sorted(steered, key=lambda c: -c.score)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_cli_search(settings: Settings, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    out = CliRunner().invoke(app, ["search", "快递丢了要赔偿", "-k", "3", "--format", fmt])
    assert out.exit_code == 0, out.output
    if fmt == "json":
        rows = json.loads(out.stdout)
        assert len(rows) == 3
        assert {"chunk_id", "score", "text", "source", "section", "motives", "stages"} <= set(
            rows[0])
    else:
        assert out.stdout.startswith("1. [")


def test_cli_index_reports_a_current_index(settings: Settings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_INDEX_DIR", str(settings.index_dir))
    out = CliRunner().invoke(app, ["index", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert [c["built"] for c in json.loads(out.stdout)["collections"]] == [False, False]
