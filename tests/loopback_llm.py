"""A chat-completions server on loopback, for what ``httpx.MockTransport`` cannot show:
time on the wire. It answers like ``scripted_llm`` but can trickle its answer a few bytes at
a time, and records whether the client hung up before the answer was complete (a real
server keeps generating, and billing, unless the connection is closed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from scripted_llm import Seen, completion, good_answer


@dataclass
class Loopback:
    """Settings for the server, and what it saw."""

    trickle_bytes: int = 0  # 0: answer at once; n: n bytes at a time
    trickle_pause: float = 0.1
    requests: int = 0
    hung_up: int = 0  # answers the client abandoned midway
    finished: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def loopback_llm(state: Loopback) -> Iterator[Loopback]:
    """Serve ``state`` on a free loopback port for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", 0))
            seen = Seen(json.loads(self.rfile.read(length)))
            with state.lock:
                state.requests += 1
            body = completion(seen, good_answer(seen)).content
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            step = state.trickle_bytes or len(body)
            try:
                for start in range(0, len(body), step):
                    self.wfile.write(body[start:start + step])
                    self.wfile.flush()
                    if state.trickle_bytes:
                        time.sleep(state.trickle_pause)
            except (BrokenPipeError, ConnectionResetError):
                with state.lock:
                    state.hung_up += 1
                return
            with state.lock:
                state.finished += 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving(handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[str]:
    """Serve an ``httpx.MockTransport``-style handler on loopback; yields the base URL. For
    code that builds its own clients (the command line)."""

    class Adapter(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

        def log_message(self, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("content-length", 0))
            request = httpx.Request(self.command, f"http://127.0.0.1{self.path}",
                                    headers=dict(self.headers.items()),
                                    content=self.rfile.read(length) if length else b"")
            response = handler(request)
            body = response.read()
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding",
                                       "content-encoding"):
                    self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _relay  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Adapter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
