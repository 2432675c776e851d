"""The HTTP service over real HTTP on loopback, and fuzzed against its own OpenAPI spec."""

from __future__ import annotations

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

from complaint_motive.server import create_app
from complaint_motive.settings import Settings

TOKEN = "test-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, index_dir: Path) -> Iterator[str]:
    app = create_app(Settings(index_dir=index_dir, backend="offline"), token=TOKEN)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
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
