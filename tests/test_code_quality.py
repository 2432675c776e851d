"""The style guide's bar: ruff and mypy clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    run = subprocess.run([str(BIN / "ruff"), "check", "plugin", "tests", "bench"], cwd=REPO,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:]


def test_mypy_is_clean() -> None:
    run = subprocess.run([str(BIN / "mypy")], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:]
