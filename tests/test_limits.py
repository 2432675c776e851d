"""Rate limits, deadlines, content filters and the circuit breaker, as real providers
produce them, through the real openai client.

What the openai client would do on its own (openai-python README): "Certain errors are
automatically retried 2 times by default, with a short exponential backoff. Connection
errors ..., 408 Request Timeout, 409 Conflict, 429 Rate Limit, and >=500 Internal errors are
all retried by default" — each call on its own, ``insufficient_quota`` included
(``_base_client._should_retry`` retries every 429). The library switches that off and
retries itself (``complaint_motive.backends.llm.limits``).
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from complaint_motive import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ContentFilterError,
    MotiveAnalyzer,
)
from loopback_llm import Loopback, loopback_llm
from scripted_llm import ScriptedEndpoint, completion, error, good_answer

COMPLAINT = "你们的客服就是一群骗子,再不退钱我就去你们店里闹,让你们都好看!"

# Azure OpenAI's documented body when the prompt trips the content filter (HTTP 400):
# "The response was filtered due to the prompt triggering Azure OpenAI's content management
# policy. Please modify your prompt and retry." with code content_filter, param prompt and an
# inner error ResponsibleAIPolicyViolation naming the categories.
AZURE_PROMPT_FILTERED = {"error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
               "management policy. Please modify your prompt and retry. To learn more about "
               "our content filtering policies please read our documentation: "
               "https://go.microsoft.com/fwlink/?linkid=2198766",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        "hate": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "medium"}}}}}

# OpenAI's 429 when the account has run out of credit: waiting does not help.
NO_QUOTA = {"error": {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}


def _analyzer(index_dir, endpoint: ScriptedEndpoint, **settings) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(index_dir=index_dir, backend="llm",
                                        openai_api_key="sk-test", **settings,
                                        **endpoint.clients())


def _filtered_answer(body, seen):
    """Azure's documented answer-side filter: finish_reason content_filter, no content."""
    response = completion(seen, good_answer(seen))
    data = response.json()
    data["choices"][0]["finish_reason"] = "content_filter"
    data["choices"][0]["message"] = {"role": "assistant", "content": None}
    return httpx.Response(200, json=data)


def test_a_three_second_burst_of_429s_slows_the_batch_and_fails_nothing(index_dir) -> None:
    """Before: 36 of 40 failed (8 rate-limited, 28 refused by the breaker)."""
    first: list[float] = []

    def burst(body, seen):
        first or first.append(time.monotonic())
        if time.monotonic() - first[0] < 3.0:  # no Retry-After, as many proxies send them
            return error(429, "Rate limit reached for requests")
        return good_answer(seen)

    endpoint = ScriptedEndpoint(default=burst)
    analyzer = _analyzer(index_dir, endpoint)  # default retries, breaker and waits
    outcomes = analyzer.analyze_many([f"第{i}单:快递丢了,要求赔偿" for i in range(40)],
                                     concurrency=8)

    assert all(o.ok and not o.result.meta.degraded for o in outcomes)
    throttled = len(endpoint.requests) - 40
    # One backoff for the batch: each round of 429s is at most the 8 calls in flight, and
    # a few rounds cover 3 s (0.5, 1, 2, 4 s) — not 8 calls each backing off on its own.
    assert 8 <= throttled <= 8 * 5
    assert analyzer.llm.breaker.state == "closed"


def test_insufficient_quota_is_a_configuration_error_at_once(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: httpx.Response(429, json=NO_QUOTA))
    analyzer = _analyzer(index_dir, endpoint, max_retries=3)
    with pytest.raises(ConfigurationError, match="quota"):
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 1


def test_prompt_caught_by_azure_content_filter_is_typed_and_not_retried(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: httpx.Response(400,
                                                                    json=AZURE_PROMPT_FILTERED))
    analyzer = _analyzer(index_dir, endpoint, provider="azure", max_retries=3)
    with pytest.raises(ContentFilterError) as caught:
        analyzer.analyze(COMPLAINT)
    assert caught.value.kind == "content_filter" and "fallback='offline'" in caught.value.message
    assert len(endpoint.requests) == 1

    degraded = analyzer.analyze(COMPLAINT, fallback="offline")
    assert degraded.meta.degraded and degraded.meta.backend == "offline"
    assert degraded.meta.degraded_reason.startswith("content_filter")


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_answer_cut_by_the_content_filter_is_typed_and_not_reasked(index_dir, method) -> None:
    endpoint = ScriptedEndpoint(default=_filtered_answer)
    analyzer = _analyzer(index_dir, endpoint, structured_output=method)
    with pytest.raises(ContentFilterError, match="on the answer"):
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 1  # the same complaint would meet the same filter


def test_the_breaker_ignores_what_a_healthy_endpoint_answers(index_dir) -> None:
    """400s, filter hits and 429s come from an endpoint that is up: none opens the breaker."""
    script = ([lambda b, s: httpx.Response(400, json=AZURE_PROMPT_FILTERED)] * 3
              + [lambda b, s: error(400, "Invalid value for 'messages'")] * 3
              + [lambda b, s: error(429, **{"retry-after-ms": "5"}), _filtered_answer] * 3)
    endpoint = ScriptedEndpoint(steps=list(script))
    analyzer = _analyzer(index_dir, endpoint, breaker_failures=2, breaker_cooldown=600)
    for _ in range(9):
        with pytest.raises((ContentFilterError, ConfigurationError)):
            analyzer.analyze(COMPLAINT)
    assert analyzer.llm.breaker.state == "closed"
    assert analyzer.analyze(COMPLAINT).meta.backend == "llm"


def test_connection_errors_timeouts_and_5xx_do_open_it(index_dir) -> None:
    endpoint = ScriptedEndpoint(steps=[lambda b, s: httpx.ConnectError("refused"),
                                       lambda b, s: httpx.ReadTimeout("slow")])
    analyzer = _analyzer(index_dir, endpoint, max_retries=0, breaker_failures=2,
                         breaker_cooldown=600)
    for _ in range(2):
        with pytest.raises(BackendError):
            analyzer.analyze(COMPLAINT)
    with pytest.raises(BackendUnavailable):
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 2


class _HeldEndpoint(ScriptedEndpoint):
    """Holds every request after the first ``free`` until ``release`` is set."""

    def __init__(self, free: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.free, self.arrived = free, 0
        self.release = threading.Event()

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        self.arrived += 1
        if self.arrived > self.free:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return self._respond(request)


def test_half_open_breaker_admits_exactly_one_trial_call(index_dir) -> None:
    endpoint = _HeldEndpoint(free=2, steps=[lambda b, s: error(503), lambda b, s: error(503)])
    analyzer = _analyzer(index_dir, endpoint, max_retries=0, breaker_failures=2,
                         breaker_cooldown=0)

    async def scenario():
        for _ in range(2):
            with pytest.raises(BackendError):
                await analyzer.aanalyze(COMPLAINT)
        tasks = [asyncio.ensure_future(analyzer.aanalyze(COMPLAINT)) for _ in range(5)]
        for _ in range(3000):  # until four calls were refused and the trial has arrived
            if sum(t.done() for t in tasks) >= 4 and endpoint.arrived > 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # room for a second call to arrive, were one let through
        in_flight = endpoint.arrived - 2
        endpoint.release.set()
        return in_flight, await asyncio.gather(*tasks, return_exceptions=True)

    in_flight, outcomes = asyncio.run(scenario())
    assert in_flight == 1  # only the trial reached the endpoint
    refused = [o for o in outcomes if isinstance(o, BackendUnavailable)]
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(refused) == 4 and "trial call" in refused[0].message
    assert len(answered) == 1 and answered[0].meta.backend == "llm"
    assert analyzer.llm.breaker.state == "closed"  # the trial's success closed it


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_trickling_answer_is_cut_at_the_deadline_and_retried_once(index_dir, run) -> None:
    """httpx's timeout bounds only the wait between bytes: a server sending 40 bytes every
    0.1 s never trips a 2 s timeout, and held a call for 8.6 s."""
    with loopback_llm(Loopback(trickle_bytes=40, trickle_pause=0.1)) as server:
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=index_dir, backend="llm", openai_api_key="sk-test",
            openai_base_url=server.base_url, model="gpt-4o-mini", timeout=2, deadline=0.5,
            max_retries=3)
        with pytest.raises(BackendError, match="deadline") as caught:
            if run == "sync":
                analyzer.analyze(COMPLAINT)
            else:
                asyncio.run(analyzer.aanalyze(COMPLAINT))
        assert caught.value.kind == "backend"
        for _ in range(300):  # the server notices the hang-up at its next write
            if server.hung_up == 2:
                break
            time.sleep(0.01)
        assert server.requests == 2  # a timeout is retried once, whatever max_retries says
        assert server.hung_up == 2 and server.finished == 0  # the connections were closed


def test_the_deadline_leaves_a_prompt_answer_alone(index_dir) -> None:
    with loopback_llm(Loopback()) as server:
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=index_dir, backend="llm", openai_api_key="sk-test",
            openai_base_url=server.base_url, model="gpt-4o-mini", timeout=2, deadline=5)
        result = analyzer.analyze(COMPLAINT)
        assert result.meta.backend == "llm" and server.finished == 1


def test_batch_after_batch_on_one_analyzer_against_a_keep_alive_server(index_dir) -> None:
    """Each analyze_many runs its own event loop; pooled keep-alive connections from the
    first loop must not serve the second (it failed with 'RuntimeError' before)."""
    with loopback_llm(Loopback()) as server:
        analyzer = MotiveAnalyzer.from_settings(
            index_dir=index_dir, backend="llm", openai_api_key="sk-test",
            openai_base_url=server.base_url, model="gpt-4o-mini")
        for _ in range(3):
            outcomes = analyzer.analyze_many([COMPLAINT, COMPLAINT], concurrency=2)
            assert all(o.result is not None for o in outcomes), [o.error for o in outcomes]
        assert asyncio.run(analyzer.aanalyze(COMPLAINT)).meta.backend == "llm"
        assert server.finished == 7


def test_the_http_service_answers_a_filtered_complaint_with_422(index_dir) -> None:
    from fastapi.testclient import TestClient

    from complaint_motive.surfaces.server import create_app

    endpoint = ScriptedEndpoint(default=lambda b, s: httpx.Response(400,
                                                                    json=AZURE_PROMPT_FILTERED))
    with TestClient(create_app(analyzer=_analyzer(index_dir, endpoint))) as client:
        response = client.post("/v1/analyze", json={"text": COMPLAINT})
    assert response.status_code == 422
    assert response.json()["kind"] == "content_filter"
