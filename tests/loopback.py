"""Starting real servers on loopback for the tests: a free port, and waiting until a server
answers (or saying why it never did)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(answers: Callable[[], bool], what: str, *, within: float = 60.0,
                  process: subprocess.Popen[bytes] | None = None, pause: float = 0.2,
                  see: str = "") -> None:
    """Poll ``answers`` until it is true; ``RuntimeError`` if ``process`` exits first or
    ``within`` seconds pass (``see`` says where its log is)."""
    deadline = time.monotonic() + within
    while not answers():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}){see}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {within:.0f} s{see}")
        time.sleep(pause)
