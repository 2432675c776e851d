"""Bounded, honest calls: the output bound and provider fields on every request, answers cut
off at the bound, rejections of a structured-output method, ``structured_output="auto"``,
and what is (not) assumed about an endpoint the user configured. The real ChatOpenAI /
openai client against tests/scripted_llm.py."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from complaint_motive import (
    ConfigurationError,
    MotiveAnalyzer,
    OutputTruncatedError,
    OutputValidationError,
)
from scripted_llm import (
    LLAMACPP_JSON_SCHEMA_ERROR,
    ScriptedEndpoint,
    answer,
    cut_off,
    error,
    good_answer,
    llamacpp_like,
)

COMPLAINT = "网银转账失败了但钱已经扣了,手续费也扣了,我要求全额退回!"
_names = itertools.count()


def _analyzer(index_dir: Path, endpoint: ScriptedEndpoint, **settings: Any) -> MotiveAnalyzer:
    settings = {"openai_api_key": "sk-test", "max_retries": 2, "timeout": 5, **settings}
    return MotiveAnalyzer.from_settings(index_dir=index_dir, backend="llm",
                                        **settings, **endpoint.clients())


def _fresh_endpoint() -> dict[str, str]:
    """A base URL and model no other test used: auto's choice is remembered per process."""
    number = next(_names)
    return {"openai_base_url": f"http://llm{number}.test/v1", "model": f"local-{number}"}


# -- the output bound, temperature, extra body ------------------------------------------------

def test_every_call_carries_the_output_bound_and_no_unset_temperature(index_dir) -> None:
    endpoint = ScriptedEndpoint()
    _analyzer(index_dir, endpoint).analyze(COMPLAINT)
    body = endpoint.requests[0].body
    assert body["max_tokens"] == 800
    assert "max_completion_tokens" not in body
    assert "temperature" not in body


@pytest.mark.parametrize(("model", "param", "field"), [
    ("o3-mini", "auto", "max_completion_tokens"),
    ("gpt-5-mini", "auto", "max_completion_tokens"),
    ("openai/o4-mini", "auto", "max_completion_tokens"),
    ("gpt-4o-mini", "auto", "max_tokens"),
    ("gpt-4o-mini", "max_completion_tokens", "max_completion_tokens"),
    ("o3", "max_tokens", "max_tokens"),
])
def test_the_bound_goes_in_the_field_the_model_takes(index_dir, model, param, field) -> None:
    endpoint = ScriptedEndpoint()
    _analyzer(index_dir, endpoint, model=model, token_limit_param=param,
              max_tokens=321).analyze(COMPLAINT)
    body = endpoint.requests[0].body
    other = {"max_tokens", "max_completion_tokens"} - {field}
    assert body[field] == 321
    assert not other & set(body)


def test_temperature_and_extra_body_are_sent_when_set(index_dir) -> None:
    endpoint = ScriptedEndpoint()
    _analyzer(index_dir, endpoint, temperature=0.3,
              extra_body={"enable_thinking": False, "top_k": 20}).analyze(COMPLAINT)
    body = endpoint.requests[0].body
    assert body["temperature"] == 0.3
    assert body["enable_thinking"] is False and body["top_k"] == 20
    assert body["max_tokens"] == 800  # provider fields come on top of the bound


# -- finish_reason=length ---------------------------------------------------------------------

@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_an_answer_cut_off_at_the_bound_is_reasked(index_dir, method: str) -> None:
    endpoint = ScriptedEndpoint(steps=[lambda b, s: cut_off(s)])
    result = _analyzer(index_dir, endpoint, structured_output=method).analyze(COMPLAINT)

    assert result.meta.attempts == 2
    assert result.meta.usage.output_tokens == 800 + 300  # the cut-off attempt counts
    reask = endpoint.requests[1].body["messages"][-1]["content"]
    assert "cut off" in reask and "max_tokens=800" in reask


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_an_answer_cut_off_every_time_says_which_setting_to_raise(index_dir, method) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: cut_off(s))
    analyzer = _analyzer(index_dir, endpoint, structured_output=method, breaker_failures=1)
    with pytest.raises(OutputTruncatedError, match="max_tokens") as caught:
        analyzer.analyze(COMPLAINT)

    assert isinstance(caught.value, OutputValidationError)  # callers catching that still do
    assert caught.value.kind == "truncated"
    assert caught.value.details["attempts"] == 2
    assert caught.value.details["usage"]["output_tokens"] == 1600
    # A cut-off answer is the endpoint working: the breaker stays closed.
    endpoint.default = None
    assert analyzer.analyze(COMPLAINT).meta.backend == "llm"


def test_a_cut_off_answer_degrades_to_offline_when_allowed(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: cut_off(s))
    result = _analyzer(index_dir, endpoint).analyze(COMPLAINT, fallback="offline")
    assert result.meta.degraded and result.meta.degraded_reason.startswith("truncated")
    assert result.meta.usage.output_tokens == 1600


# -- rejections of the structured-output method ------------------------------------------------

@pytest.mark.parametrize(("status", "message"), [
    (500, LLAMACPP_JSON_SCHEMA_ERROR),
    (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
          "with this model."),
    (400, "tool_choice: object is not supported for this model"),
    (422, "tools: unsupported for this model"),
], ids=["llamacpp-500", "openai-400", "tool-choice-400", "tools-422"])
def test_a_rejected_method_is_a_configuration_error_quoting_the_server(
        index_dir, status: int, message: str) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: error(status, message))
    analyzer = _analyzer(index_dir, endpoint, breaker_failures=1)
    with pytest.raises(ConfigurationError, match="structured_output") as caught:
        analyzer.analyze(COMPLAINT)

    assert message[:60] in caught.value.message
    assert caught.value.details["server_message"].startswith(message)
    assert len(endpoint.requests) == 1  # not retried, although max_retries=2
    with pytest.raises(ConfigurationError):  # not counted by the breaker either
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 2


def test_a_plain_server_error_is_still_retried(index_dir) -> None:
    endpoint = ScriptedEndpoint(steps=[lambda b, s: error(500, "out of memory")])
    assert _analyzer(index_dir, endpoint).analyze(COMPLAINT).meta.backend == "llm"
    assert len(endpoint.requests) == 2


# -- structured_output="auto" ------------------------------------------------------------------

def test_auto_settles_on_function_calling_where_json_schema_is_rejected(index_dir,
                                                                        caplog) -> None:
    where = _fresh_endpoint()
    endpoint = ScriptedEndpoint(default=llamacpp_like)
    caplog.set_level(logging.INFO, logger="complaint_motive")
    first = _analyzer(index_dir, endpoint, structured_output="auto", **where)
    assert first.analyze(COMPLAINT).meta.backend == "llm"

    methods = ["tools" if seen.tools else seen.response_format["type"]
               for seen in endpoint.requests]
    assert methods == ["json_schema", "tools"]
    assert first.llm.method == "function_calling"
    assert "using function_calling" in caplog.text
    # Once per process: another analyzer for the same endpoint goes straight to it.
    second = _analyzer(index_dir, endpoint, structured_output="auto", **where)
    second.analyze(COMPLAINT)
    assert endpoint.requests[-1].tools
    assert len(endpoint.requests) == 3


def test_auto_falls_through_to_json_mode_with_the_schema_in_the_prompt(index_dir) -> None:
    def json_object_only(body, seen):
        if body.get("tools") or (body.get("response_format") or {}).get("type") != "json_object":
            return error(400, "This response_format type is unavailable now; tools are "
                         "not supported")
        return good_answer(seen)

    endpoint = ScriptedEndpoint(default=json_object_only)
    analyzer = _analyzer(index_dir, endpoint, structured_output="auto", **_fresh_endpoint())
    assert analyzer.analyze(COMPLAINT).meta.backend == "llm"
    assert len(endpoint.requests) == 3
    last = endpoint.requests[-1]
    assert last.response_format == {"type": "json_object"}
    assert '"primary_motive"' in last.text and "json" in last.text.lower()
    assert analyzer.llm.method == "json_mode" and analyzer.llm.schema_in_prompt


def test_auto_with_every_method_rejected_is_a_configuration_error(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=lambda b, s: error(400, "response_format and tools "
                                                           "are not supported"))
    analyzer = _analyzer(index_dir, endpoint, structured_output="auto", **_fresh_endpoint())
    with pytest.raises(ConfigurationError, match="not supported"):
        analyzer.analyze(COMPLAINT)
    assert len(endpoint.requests) == 3


def test_auto_keeps_json_schema_where_it_is_accepted(index_dir) -> None:
    endpoint = ScriptedEndpoint()
    analyzer = _analyzer(index_dir, endpoint, structured_output="auto", **_fresh_endpoint())
    analyzer.analyze(COMPLAINT)
    analyzer.analyze(COMPLAINT)
    assert [s.response_format["type"] for s in endpoint.requests] == ["json_schema"] * 2
    # Settled: the schema no longer travels in the prompt as well.
    assert '"primary_motive"' not in endpoint.requests[1].text


# -- arrays are bounded where the method accepts it --------------------------------------------

def test_the_strict_modes_stay_plain_and_validation_holds_the_bounds(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=answer(
        secondary_motives=["respect", "venting", "suggestion"],
        specific_steps=["核实扣款", "联系银行", "回电客户"]))
    results = [_analyzer(index_dir, endpoint, structured_output=method).analyze(COMPLAINT)
               for method in ("function_calling", "json_schema")]
    tool = endpoint.requests[0].tools[0]["function"]["parameters"]["properties"]
    schema = endpoint.requests[1].response_format["json_schema"]["schema"]["properties"]
    for properties in (tool, schema):
        assert all("maxItems" not in node and "maxLength" not in node
                   for node in properties.values())
    for result in results:  # the bounds held all the same, each cut a repair
        assert len(result.secondary_motives) == 2
        assert any(w.startswith("repaired: secondary_motives: kept the first 2")
                   for w in result.meta.warnings)


# -- what is assumed about a configured endpoint -----------------------------------------------

def test_a_base_url_without_a_model_is_a_configuration_error(index_dir) -> None:
    with pytest.raises(ConfigurationError, match="model"):
        _analyzer(index_dir, ScriptedEndpoint(), openai_base_url="http://localhost:8080/v1")


def test_a_configured_endpoint_is_not_priced_at_list_prices(index_dir) -> None:
    endpoint = ScriptedEndpoint()
    local = _analyzer(index_dir, endpoint, openai_base_url="http://localhost:8080/v1",
                      model="gpt-4o-mini").analyze(COMPLAINT)
    assert local.meta.model == "gpt-4o-mini" and local.meta.cost_usd is None
    priced = _analyzer(index_dir, endpoint, openai_base_url="http://localhost:8080/v1",
                       model="my-model", prices={"my-model": (1.0, 2.0)}).analyze(COMPLAINT)
    assert priced.meta.cost_usd == pytest.approx((900 * 1.0 + 300 * 2.0) / 1e6)
    hosted = _analyzer(index_dir, endpoint).analyze(COMPLAINT)  # OpenAI's own API
    assert hosted.meta.model == "gpt-4o-mini" and hosted.meta.cost_usd is not None


def test_the_llamacpp_recipe_against_an_endpoint_shaped_like_llamacpp(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=llamacpp_like)
    result = _analyzer(index_dir, endpoint, provider="llamacpp").analyze(COMPLAINT)
    body = endpoint.requests[0].body
    assert result.meta.backend == "llm" and result.meta.cost_usd is None
    assert body["response_format"]["type"] == "json_object" and "tools" not in body
    assert body["response_format"]["schema"]["properties"]["reply"]["maxLength"] == 600
    assert body["max_tokens"] == 800 and "temperature" not in body and body["stream"] is False
    assert len(endpoint.requests) == 1


# -- streaming -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_a_streamed_answer_is_parsed_and_its_usage_counted(index_dir, method: str) -> None:
    endpoint = ScriptedEndpoint()
    result = _analyzer(index_dir, endpoint, structured_output=method,
                       stream=True).analyze(COMPLAINT)
    body = endpoint.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert result.primary_motive.id == "compensation"
    assert result.meta.usage.input_tokens == 900 and result.meta.usage.output_tokens == 300


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_a_streamed_answer_cut_off_at_the_bound_is_reasked(index_dir, method: str) -> None:
    endpoint = ScriptedEndpoint(steps=[lambda b, s: cut_off(s)])
    result = _analyzer(index_dir, endpoint, structured_output=method,
                       stream=True).analyze(COMPLAINT)
    assert result.meta.attempts == 2
    assert result.meta.usage.output_tokens == 800 + 300


def test_a_tool_call_cut_off_without_saying_so_is_still_a_truncation(index_dir) -> None:
    """llama-cpp-python answers finish_reason=tool_calls for a tool call cut off at the
    bound: an unparsable answer that used the whole bound counts as cut off."""
    def cut_tool_call(body, seen):
        data = cut_off(seen).json()
        data["choices"][0]["finish_reason"] = "tool_calls"
        return httpx.Response(200, json=data)

    endpoint = ScriptedEndpoint(default=cut_tool_call)
    with pytest.raises(OutputTruncatedError):
        _analyzer(index_dir, endpoint, structured_output="function_calling").analyze(COMPLAINT)
