"""Faults in numbers: a large batch against a flaky endpoint loses nothing; the store
survives concurrent builders, killed builds and damage."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from complaint_motive import IndexStoreError, MotiveAnalyzer
from complaint_motive.knowledge.index import KnowledgeIndex
from complaint_motive.settings import Settings
from scripted_llm import ScriptedEndpoint, answer, completion, error, good_answer

REPO = Path(__file__).resolve().parents[1]


def test_a_thousand_complaints_with_a_fifth_faulty_lose_nothing(index_dir: Path) -> None:
    chooser = random.Random(7)
    faults = [lambda b, s: error(500), lambda b, s: error(429, **{"retry-after-ms": "1"}),
              lambda b, s: httpx.ReadTimeout("scripted"),
              lambda b, s: completion(s, '{"primary_motive": "venting", "stage'),
              answer(citations=["invented#chunk"]), answer(primary_motive="greed")]
    injected: list[str] = []

    def flaky(body, seen):
        if chooser.random() < 0.2:
            fault = chooser.choice(faults)
            injected.append(getattr(fault, "__name__", "fault"))
            return fault(body, seen)
        return good_answer(seen)

    endpoint = ScriptedEndpoint(default=flaky)
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk", max_retries=0, reask=1,
        breaker_failures=10_000, **endpoint.clients())
    items = [{"id": f"c{i}", "text": f"第{i}号订单:东西坏了,要求退款或换货"}
             for i in range(1000)]

    outcomes = analyzer.analyze_many(items, concurrency=32)

    assert [o.id for o in outcomes] == [f"c{i}" for i in range(1000)]  # in order, no dupes
    assert all((o.result is None) != (o.error is None) for o in outcomes)
    assert len(injected) >= 150
    failed = [o for o in outcomes if not o.ok]
    assert {o.error["kind"] for o in failed} <= {"backend", "validation"}
    # Faults that a retry or re-ask can absorb were absorbed: far fewer failures than faults.
    assert len(failed) < len(injected)


def test_with_fallback_every_faulty_item_still_gets_a_degraded_result(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: error(503))
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk", max_retries=0,
        breaker_failures=3, fallback="offline", **endpoint.clients())
    outcomes = analyzer.analyze_many([f"东西坏了要退款{i}" for i in range(40)], concurrency=8)
    assert all(o.ok and o.result.meta.degraded for o in outcomes)
    # The breaker opened: most items never reached the dead endpoint.
    assert len(endpoint.requests) < 20
    assert any("backend_unavailable" in o.result.meta.degraded_reason for o in outcomes)


def _index_command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "complaint_motive.surfaces.cli", "index", "--format", "json",
            *args]


def _env(folder: Path) -> dict[str, str]:
    return {**os.environ, "COMPLAINT_MOTIVE_INDEX_DIR": str(folder)}


def test_two_processes_building_the_same_folder(tmp_path: Path) -> None:
    folder = tmp_path / "shared-index"
    runs = [subprocess.Popen(_index_command(folder), env=_env(folder), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), [r[1][-500:] for r in results]
    built = [[c["built"] for c in json.loads(out)["collections"]] for out, _ in results]
    assert sorted(built) == [[False, False], [True, True]]  # one built, the other waited
    index = KnowledgeIndex.from_settings(Settings(index_dir=folder))
    assert [r.built for r in index.ensure()] == [False, False]
    names = [c.name for c in index.client.list_collections()]
    assert len(names) == 2


SLOW_BUILD = """
import sys, time
from complaint_motive.knowledge.embeddings import HashingEmbeddings
from complaint_motive.knowledge.index import KnowledgeIndex, open_client
from complaint_motive.settings import Settings

class Slow(HashingEmbeddings):
    @property
    def model_name(self):
        return HashingEmbeddings().model_name  # the same space as the default
    def embed_documents(self, texts):
        print("embedding", flush=True)
        time.sleep(60)
        return super().embed_documents(texts)

settings = Settings(index_dir=sys.argv[1])
KnowledgeIndex(open_client(settings), Slow(), lock_path=settings.index_dir / ".build.lock").ensure()
"""


def test_a_build_killed_midway_is_never_read_and_is_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "ix"
    builder = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    assert builder.stdout.readline().strip() == "embedding"  # the collection now exists
    builder.send_signal(signal.SIGKILL)
    builder.wait(timeout=10)

    index = KnowledgeIndex.from_settings(Settings(index_dir=folder))
    reports = index.ensure()
    assert reports[0].built is True  # the half-built collection was not taken as complete
    assert len(index.search("退款", 3)) == 3


def test_a_damaged_store_is_refused_clearly_then_rebuilt(tmp_path: Path) -> None:
    folder = tmp_path / "ix"
    KnowledgeIndex.from_settings(Settings(index_dir=folder)).ensure()
    (folder / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)

    broken = subprocess.run(_index_command(folder), env=_env(folder), capture_output=True,
                            text=True, timeout=120)
    assert broken.returncode == 3
    assert "--rebuild" in broken.stderr and "Traceback" not in broken.stderr

    fixed = subprocess.run(_index_command(folder, "--rebuild"), env=_env(folder),
                           capture_output=True, text=True, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert "moved aside" in fixed.stderr
    assert list(tmp_path.glob("ix.damaged-*"))  # kept for inspection, not deleted


def test_index_written_by_another_schema_is_rebuilt(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(index_dir=tmp_path / "ix")
    index = KnowledgeIndex.from_settings(settings)
    name = index.ensure()[0].collection
    index.client.get_collection(name).modify(
        metadata={"complete": True, "schema": "0", "kind": "guidance"})
    assert KnowledgeIndex.from_settings(settings).ensure()[0].built is True
    assert "another version" in caplog.text


def test_unreachable_chroma_server_is_a_typed_error(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path, chroma_host="127.0.0.1", chroma_port=9)
    started = time.monotonic()
    with pytest.raises(IndexStoreError, match="Chroma"):
        KnowledgeIndex.from_settings(settings).ensure()
    assert time.monotonic() - started < 30
