"""The LLM backend: the real ChatOpenAI / openai client against a scripted endpoint."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from complaint_motive import BackendError, BackendUnavailable, MotiveAnalyzer, OutputValidationError
from complaint_motive.analysis.prompts import prompt_version
from scripted_llm import ScriptedEndpoint, answer, completion, error, good_answer


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


COMPLAINT = "网银转账失败了但钱已经扣了,手续费也扣了,我要求全额退回!"


def test_valid_answer_becomes_an_enriched_result(llm_analyzer: MotiveAnalyzer,
                                                 endpoint: ScriptedEndpoint) -> None:
    result = llm_analyzer.analyze(COMPLAINT)

    assert result.meta.backend == "llm"
    assert result.primary_motive.id == "compensation"
    assert result.primary_motive.confidence == pytest.approx(0.85)  # "high"
    assert [m.id for m in result.secondary_motives] == ["venting"]
    # Enrichment from the taxonomy, not from the model.
    assert {v.name for v in result.primary_motive.frameworks} >= {"补救的心理", "求偿"}
    assert result.meta.usage.input_tokens == 900 and result.meta.usage.output_tokens == 300
    assert result.meta.cost_usd == pytest.approx((900 * 0.15 + 300 * 0.60) / 1e6)
    assert result.meta.prompt_version == prompt_version()
    seen = endpoint.requests[0]
    assert len(result.citations) == 2 and len(seen.handles) == llm_analyzer.settings.top_k
    # Clause numbers came back as the complaint's own words, placed in the text given.
    for evidence in result.primary_motive.evidence:
        assert COMPLAINT[evidence.start:evidence.end] == evidence.quote == "我要求全额退回"


def test_request_shows_guidance_exemplars_fenced_complaint_and_schema(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint) -> None:
    llm_analyzer.analyze(COMPLAINT)
    seen = endpoint.requests[0]

    assert seen.clauses == {1: "网银转账失败了但钱已经扣了", 2: "手续费也扣了", 3: "我要求全额退回"}
    assert len(seen.handles) == llm_analyzer.settings.top_k
    assert "Labelled examples of similar complaints" in seen.text
    assert seen.text.count("primary_motive=") == llm_analyzer.settings.exemplars_k
    assert seen.body["messages"][0]["role"] == "system"
    schema = seen.response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert "leverage" in json.dumps(schema["properties"]["primary_motive"])
    # Ranges stay out of the strict schema (strict providers reject them): clause numbers
    # are an enum there, bounds are validation's.
    assert not _keys(schema) & {"minimum", "maximum", "default", "minItems", "maxItems",
                                "maxLength"}
    assert schema["properties"]["citations"]["items"]["enum"][:2] == ["g1", "g2"]


def test_prompt_apart_from_the_complaint_stays_within_budget(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint) -> None:
    llm_analyzer.analyze(COMPLAINT)
    # 5,000 before the fences: their rule, the request's code and the tags cost ~190.
    assert len(endpoint.requests[0].text) - len(COMPLAINT) <= 5250


@pytest.mark.parametrize("method", ["function_calling", "json_mode"])
def test_other_structured_output_methods(index_dir, method: str) -> None:
    endpoint = ScriptedEndpoint()
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test",
        structured_output=method, **endpoint.clients())

    result = analyzer.analyze(COMPLAINT)

    assert result.primary_motive.id == "compensation"
    seen = endpoint.requests[0]
    if method == "function_calling":
        assert seen.tools[0]["function"]["name"] == "ModelAnswer"
    else:
        assert seen.response_format == {"type": "json_object"}
        assert '"primary_motive"' in seen.text  # the schema is described in the prompt
        assert "json" in seen.text.lower()


def test_rate_limit_then_success_is_retried_by_the_client(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint) -> None:
    endpoint.steps = [lambda b, s: error(429, "slow down", **{"retry-after-ms": "10"})]
    result = llm_analyzer.analyze(COMPLAINT)
    assert result.meta.backend == "llm"
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("failure", [
    lambda b, s: error(500), lambda b, s: error(503),
    lambda b, s: httpx.ReadTimeout("scripted timeout"),
    lambda b, s: httpx.ConnectError("scripted refusal"),
], ids=["500", "503", "timeout", "connect"])
def test_transport_failures_end_in_a_backend_error(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint, failure) -> None:
    endpoint.default = failure
    with pytest.raises(BackendError) as caught:
        llm_analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 2  # one call plus max_retries=1
    assert COMPLAINT not in str(caught.value)


def test_rate_limiting_that_never_ends_fails_after_rate_limit_wait(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: error(429, **{"retry-after-ms": "10"}))
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test", rate_limit_wait=1.0,
        **endpoint.clients())
    with pytest.raises(BackendError, match="rate_limit_wait"):
        analyzer.analyze(COMPLAINT)
    # Repeated 429s back off beyond the 10 ms the server asked for: a handful of requests
    # in that second, not a hundred.
    assert 2 <= len(endpoint.requests) <= 6


def test_auth_failure_is_a_configuration_error(llm_analyzer, endpoint) -> None:
    from complaint_motive import ConfigurationError

    endpoint.default = lambda b, s: error(401, "bad key")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        llm_analyzer.analyze(COMPLAINT)


@pytest.mark.parametrize("bad", [
    lambda b, s: completion(s, '{"primary_motive": "compensation", "primary_conf'),
    lambda b, s: completion(s, ""),
    answer(primary_motive="greed"),
    answer(primary_evidence=["这句话不在投诉里"]),
    answer(citations=["made-up#section"]),
    answer(reply="我们将赔偿您10000元。"),
    answer(primary_confidence=170),  # not even a percentage (85 is read as one)
], ids=["broken-json", "empty", "unknown-label", "invented-quote", "invented-citation",
        "promise", "confidence-range"])
def test_invalid_answer_is_reasked_once_with_the_problem(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint, bad) -> None:
    endpoint.steps = [bad]
    result = llm_analyzer.analyze(COMPLAINT)

    assert result.meta.attempts == 2
    assert result.meta.usage.input_tokens == 1800  # both attempts counted
    reask = endpoint.requests[1].body["messages"][-1]["content"]
    assert "could not be accepted" in reask


def test_answer_still_invalid_after_the_reask_is_a_typed_error(
        llm_analyzer: MotiveAnalyzer, endpoint: ScriptedEndpoint) -> None:
    endpoint.default = answer(citations=["made-up#section"])
    with pytest.raises(OutputValidationError) as caught:
        llm_analyzer.analyze(COMPLAINT)
    assert caught.value.details["attempts"] == 2
    assert caught.value.details["usage"]["input_tokens"] == 1800
    assert "cite at least one guidance handle (g1–g4)" in caught.value.details["problems"][0]


def test_refusal_is_reasked_then_reported(llm_analyzer, endpoint) -> None:
    def refuse(body, seen):
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": None, "refusal": "I can't help with that."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    endpoint.default = refuse
    with pytest.raises(OutputValidationError, match="refused") as caught:
        llm_analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 2
    assert caught.value.details["usage"]["total_tokens"] == 30


def test_fallback_to_offline_marks_the_result_degraded(llm_analyzer, endpoint) -> None:
    endpoint.default = lambda b, s: error(500)
    result = llm_analyzer.analyze(COMPLAINT, fallback="offline")

    assert result.meta.backend == "offline"
    assert result.meta.degraded is True
    assert "backend" in result.meta.degraded_reason
    assert any(w.startswith("degraded") for w in result.meta.warnings)


def test_circuit_breaker_stops_calling_a_dead_endpoint(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: error(500))
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test", max_retries=0,
        breaker_failures=3, breaker_cooldown=60, **endpoint.clients())
    for _ in range(3):
        with pytest.raises(BackendError):
            analyzer.analyze(COMPLAINT)
    calls = len(endpoint.requests)
    with pytest.raises(BackendUnavailable):
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == calls


def test_async_batch_keeps_order_and_reports_each_failure(index_dir) -> None:
    texts = [f"第{i}单:外卖少送了一份,要求退款{i}" for i in range(12)]

    def script(body, seen):
        number = int(seen.clauses[1].split("单")[0][1:])
        return error(500) if number % 4 == 0 else good_answer(seen)

    endpoint = ScriptedEndpoint(default=script)
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test", max_retries=0,
        breaker_failures=100, **endpoint.clients())

    outcomes = asyncio.run(analyzer.aanalyze_many(
        [{"id": str(i), "text": t} for i, t in enumerate(texts)], concurrency=4))

    assert [o.id for o in outcomes] == [str(i) for i in range(12)]
    assert [o.ok for o in outcomes] == [i % 4 != 0 for i in range(12)]
    assert all(o.error["kind"] == "backend" for o in outcomes if not o.ok)


def test_runnable_protocol(llm_analyzer: MotiveAnalyzer) -> None:
    from langchain_core.runnables import RunnableLambda

    chain = RunnableLambda(lambda text: text.strip()) | llm_analyzer
    assert chain.invoke(f"  {COMPLAINT}  ").meta.backend == "llm"
    results = llm_analyzer.batch([COMPLAINT, COMPLAINT])
    assert [r.primary_motive.id for r in results] == ["compensation", "compensation"]
    assert asyncio.run(llm_analyzer.ainvoke(COMPLAINT)).meta.backend == "llm"


def test_langchain_callbacks_reach_the_model_call(llm_analyzer: MotiveAnalyzer) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.started: list[str] = []
            self.ended = 0

        def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
            self.started.append(messages[0][-1].content)

        def on_llm_end(self, response, **kwargs) -> None:
            self.ended += 1

    recorder = Recorder()
    llm_analyzer.invoke(COMPLAINT, config={"callbacks": [recorder]})
    assert len(recorder.started) == 1 and "(2) 手续费也扣了" in recorder.started[0]
    assert recorder.ended == 1


def test_log_records_carry_fields_but_no_text(llm_analyzer: MotiveAnalyzer, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="complaint_motive")
    llm_analyzer.analyze(COMPLAINT)
    record = next(r for r in caplog.records if getattr(r, "event", None) == "analysed")
    assert record.backend == "llm" and record.motive == "compensation"
    assert record.tokens == 1200
    assert COMPLAINT not in caplog.text and "退回" not in caplog.text


def test_usage_of_earlier_attempts_survives_a_transport_failure(llm_analyzer, endpoint) -> None:
    endpoint.steps = [answer(citations=["made-up#section"]), lambda b, s: error(500),
                      lambda b, s: error(500)]
    with pytest.raises(BackendError) as caught:
        llm_analyzer.analyze(COMPLAINT)
    assert caught.value.details["usage"]["input_tokens"] == 900
    assert caught.value.details["attempts"] == 2


@pytest.mark.parametrize(("reply_language", "text", "asked"), [
    ("auto", "I was charged twice for one order; refund the duplicate.", "English"),
    ("auto", COMPLAINT, "Chinese"),
    ("zh", "I was charged twice for one order; refund the duplicate.", "Chinese"),
    ("en", COMPLAINT, "English"),
])
def test_the_model_is_asked_for_the_reply_language(
        index_dir, reply_language: str, text: str, asked: str) -> None:
    endpoint = ScriptedEndpoint()
    analyzer = MotiveAnalyzer.from_settings(
        index_dir=index_dir, backend="llm", openai_api_key="sk-test",
        reply_language=reply_language, **endpoint.clients())
    result = analyzer.analyze(text)
    assert endpoint.requests[0].language == asked
    assert result.reply.language == {"Chinese": "zh", "English": "en"}[asked]
    # What the taxonomy adds follows the same language as the model's reply.
    han = re.compile(r"[\u4e00-\u9fff]")
    assert bool(han.search(result.stage.handling)) == (asked == "Chinese")
    assert bool(han.search(result.reply.text)) == (asked == "Chinese")
