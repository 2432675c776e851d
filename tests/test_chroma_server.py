"""Server mode: a real `chroma run` on loopback, shared by several workers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from complaint_motive import MotiveAnalyzer
from complaint_motive.index import KnowledgeIndex
from complaint_motive.settings import Settings

CHROMA = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    server = subprocess.Popen([CHROMA, "run", "--path", str(data), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success:
                break
        except httpx.TransportError:
            pass
        assert server.poll() is None, "chroma run exited"
        assert time.monotonic() < deadline, "chroma run did not start"
        time.sleep(0.2)
    yield port
    server.terminate()
    server.wait(timeout=20)


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
