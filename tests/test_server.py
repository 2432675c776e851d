"""The HTTP service over real HTTP on loopback, and fuzzed against its own OpenAPI spec."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from complaint_motive import MotiveAnalyzer
from complaint_motive.settings import Settings
from complaint_motive.surfaces.server import create_app, server_config
from loopback import free_port, wait_until_up

TOKEN = "test-token"


def _serve(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_up(lambda: server.started, "uvicorn", within=30, pause=0.05)
    return server, thread


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, index_dir: Path) -> Iterator[str]:
    app = create_app(Settings(index_dir=index_dir, backend="offline"), token=TOKEN)
    port = free_port()
    server, thread = _serve(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="error"))
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as http:
        yield http


def test_health(client: httpx.Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["backend"] == "offline"


def test_analyze_text_and_turns(client: httpx.Client) -> None:
    one = client.post("/v1/analyze", json={"text": "退款半个月了还没到账,钱必须退给我"})
    assert one.status_code == 200
    assert one.json()["primary_motive"]["id"] == "compensation"
    turns = client.post("/v1/analyze", json={"turns": [
        {"role": "customer", "text": "我的快递三天没动了"},
        {"role": "agent", "text": "您好,我帮您查一下"},
        {"role": "customer", "text": "到底在哪?再不给说法我就去投诉"}]})
    assert turns.status_code == 200
    assert turns.json()["stage"]["id"] == "latent_complaint"


def test_batch_keeps_order_and_errors(client: httpx.Client) -> None:
    response = client.post("/v1/analyze/batch", json={"items": [
        {"id": "a", "text": "东西坏了要换货"}, {"id": "b", "text": "   "},
        {"id": "c", "text": "建议你们延长营业时间"}]})
    outcomes = response.json()["outcomes"]
    assert [o["id"] for o in outcomes] == ["a", "b", "c"]
    assert outcomes[1]["error"]["kind"] == "input" and outcomes[0]["result"]


def test_batch_answers_a_bad_item_with_that_items_error(client: httpx.Client) -> None:
    response = client.post("/v1/analyze/batch", json={"items": [
        {"id": "a", "text": "东西坏了要换货"}, {"id": "b", "text": "退款", "language": "fr"},
        {"id": "c", "text": "x", "turns": []}, 42, {"id": "e", "text": "建议延长营业时间"}]})
    assert response.status_code == 200
    outcomes = response.json()["outcomes"]
    assert [o["id"] for o in outcomes] == ["a", "b", "c", None, "e"]
    assert [o["result"] is not None for o in outcomes] == [True, False, False, False, True]
    assert "item 2: language" in outcomes[1]["error"]["message"]
    assert outcomes[3]["error"]["kind"] == "input"


def test_each_request_may_name_its_reply_language(client: httpx.Client) -> None:
    response = client.post("/v1/analyze/batch", json={"items": [
        {"id": "zh", "text": "东西坏了要换货"},
        {"id": "en", "text": "东西坏了要换货", "language": "en"}]})
    chinese, english = (o["result"] for o in response.json()["outcomes"])
    assert (chinese["reply"]["language"], english["reply"]["language"]) == ("zh", "en")
    assert english["reply"]["text"].startswith("Hello")
    assert client.post("/v1/analyze", json={"text": "退款", "language": "fr"}).status_code == 422


@pytest.mark.parametrize(("request_kwargs", "status", "kind"), [
    ({"json": {"text": "   "}}, 422, "input"),
    ({"json": {"text": "a", "turns": []}}, 422, "input"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "input"),
    ({"content": b"x" * 1_000_001, "headers": {"content-type": "application/json"}}, 413,
     "too_large"),
])
def test_errors_are_problem_responses(client: httpx.Client, request_kwargs: dict, status: int,
                                      kind: str) -> None:
    response = client.post("/v1/analyze", **request_kwargs)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["kind"] == kind and "Traceback" not in response.text


def test_bearer_token_is_required(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/analyze", json={"text": "退款"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{base_url}/v1/analyze", json={"text": "退款"},
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_openapi_schema_comes_from_the_models(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/analyze", "/v1/analyze/batch", "/healthz"} <= set(spec["paths"])
    assert "MotiveAnalysis" in spec["components"]["schemas"]


def test_fuzzed_against_its_own_openapi_spec(base_url: str) -> None:
    """Every operation, with inputs generated from the spec: no 5xx, responses that match
    the spec (schemathesis' default checks). Not "schema-valid data is accepted": a text of
    control characters only is valid JSON-schema-wise and rightly refused as input (422)."""
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 3

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(base_url=base_url,
                                   headers={"Authorization": f"Bearer {TOKEN}"},
                                   excluded_checks=[positive_data_acceptance])

        check()


# -- bounds against misuse, on the real uvicorn server -------------------------------------

@pytest.fixture(scope="module")
def bounded(index_dir: Path) -> Iterator[tuple[str, int]]:
    """The service as ``complaint-motive serve`` runs it (server_config), with short
    timeouts so a test can watch them act."""
    app = create_app(Settings(index_dir=index_dir, backend="offline"), body_timeout=2)
    port = free_port()
    server, thread = _serve(server_config(app, host="127.0.0.1", port=port,
                                          header_timeout=1.5, log_level="error"))
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def _read_all(sock: socket.socket, limit: float = 20) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` s pass)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it(
        bounded: tuple[str, int]) -> None:
    host, port = bounded
    chunk, total = b"x" * 65536, 40 * 16
    sent = 0

    def forty_megabytes() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(total):
            sent += 1
            yield chunk

    # httpx sends a generator body with Transfer-Encoding: chunked (no Content-Length).
    with httpx.Client(timeout=30) as http:
        try:
            response = http.post(f"http://{host}:{port}/v1/analyze", content=forty_megabytes(),
                                 headers={"content-type": "application/json"})
        except httpx.HTTPError:  # the server closed while the client was still sending
            response = None
    assert sent < total  # the server stopped reading long before the end
    if response is not None:
        assert response.status_code == 413 and response.json()["kind"] == "too_large"


def test_a_chunked_body_under_the_limit_is_served(bounded: tuple[str, int]) -> None:
    host, port = bounded
    body = json.dumps({"text": "退款半个月了还没到账"}, ensure_ascii=False).encode()
    response = httpx.post(f"http://{host}:{port}/v1/analyze", timeout=30,
                          content=iter([body[:10], body[10:]]),
                          headers={"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["primary_motive"]["id"]


def test_slow_and_half_open_connections_are_closed(bounded: tuple[str, int]) -> None:
    host, port = bounded
    silent = [socket.create_connection((host, port)) for _ in range(20)]
    trickle = socket.create_connection((host, port))
    trickle.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    slow_body = socket.create_connection((host, port))
    slow_body.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 100\r\n\r\n{\"text\":")  # the body never finishes
    try:
        for sock in [*silent, trickle]:
            assert _read_all(sock) == b""  # closed by the server, with nothing said
        assert b" 408 " in _read_all(slow_body).split(b"\r\n")[0] + b" "
        # and the service still answers
        assert httpx.get(f"http://{host}:{port}/healthz", timeout=10).status_code == 200
    finally:
        for sock in [*silent, trickle, slow_body]:
            sock.close()


def test_healthz_reports_degraded_while_the_breaker_is_open(index_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from scripted_llm import ScriptedEndpoint, error

    endpoint = ScriptedEndpoint(default=lambda body, seen: error(503))
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk", model="m", max_retries=0,
        breaker_failures=2, breaker_cooldown=600, **endpoint.clients())
    with TestClient(create_app(analyzer=analyzer)) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        for _ in range(2):
            http.post("/v1/analyze", json={"text": "退款没到账"})
        health = http.get("/healthz").json()
        assert health["status"] == "degraded" and health["breaker"] == "open"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_access_log_never_writes_query_strings(index_dir: Path) -> None:
    records = _Records()
    loggers = [logging.getLogger("uvicorn.access"), logging.getLogger("complaint_motive.access")]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.INFO)
    app = create_app(Settings(index_dir=index_dir, backend="offline"))
    port = free_port()
    # uvicorn's own access log on, as a deployment may run it, beside the app's.
    server, thread = _serve(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="info", access_log=True))
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz?token=s3cr3t-token&phone=1",
                             timeout=10)
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while len(records.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for logger in loggers:
            logger.removeHandler(records)
    assert any("/healthz" in line for line in records.lines), records.lines
    assert not any("s3cr3t" in line or "?" in line for line in records.lines)
