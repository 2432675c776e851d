from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from complaint_motive.analyzer import MotiveAnalyzer  # noqa: E402
from complaint_motive.settings import Settings  # noqa: E402
from loopback import free_port, wait_until_up  # noqa: E402
from scripted_llm import ScriptedEndpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's keys, config file or index."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "COMPLAINT_MOTIVE_BACKEND",
                 "COMPLAINT_MOTIVE_CONFIG_FILE", "COMPLAINT_MOTIVE_INDEX_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built index (and trained model) shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("index")
    MotiveAnalyzer(Settings(index_dir=folder, backend="offline")).warm_up()
    return folder


@pytest.fixture
def settings(index_dir: Path, tmp_path: Path) -> Settings:
    return Settings(index_dir=index_dir, backend="offline",
                    corrections_file=tmp_path / "corrections.jsonl")


@pytest.fixture
def offline(settings: Settings) -> MotiveAnalyzer:
    return MotiveAnalyzer(settings)


@pytest.fixture
def endpoint() -> ScriptedEndpoint:
    return ScriptedEndpoint()


@pytest.fixture
def llm_analyzer(index_dir: Path, endpoint: ScriptedEndpoint) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test", model="gpt-4o-mini",
        max_retries=1,
        timeout=5, breaker_cooldown=60, **endpoint.clients())


CHROMA = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")


@pytest.fixture(scope="session")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``chroma run`` on a free loopback port (server mode), for the session."""
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    server = subprocess.Popen([CHROMA, "run", "--path", str(data), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).is_success
        except httpx.TransportError:
            return False

    wait_until_up(answers, "chroma run", process=server)
    yield port
    server.terminate()
    server.wait(timeout=20)
