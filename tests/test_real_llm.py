"""The library's real ChatOpenAI path against a real model: llama.cpp's OpenAI-compatible
server (llama-cpp-python) on loopback, serving Gemma 3 270M (tests/llama_server.py).

A 270M base model cannot be expected to analyse well; what is asserted is what it can do:
the request is accepted (or refused with the server's own words), the grammar-constrained
answer parses, validation runs, and a result or a typed error comes back, never a crash,
with the tokens the server counted and the latency recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from complaint_motive import ConfigurationError, MotiveAnalyzer
from complaint_motive.analyzer import Outcome
from llama_server import MODEL_ALIAS, llama_server, unavailable
from scripted_llm import LLAMACPP_JSON_SCHEMA_ERROR

pytestmark = pytest.mark.slow

COMPLAINTS = [
    "网银转账失败了但钱已经扣了,手续费也扣了,我要求全额退回!",
    "I was charged twice for one order; refund the duplicate or I will report you.",
]


@pytest.fixture(scope="session")
def real_llm() -> Iterator[str]:
    reason = unavailable()
    if reason:
        if os.environ.get("CI"):  # a green CI must not hide a missing install step
            pytest.fail(reason)
        pytest.skip(reason)
    with llama_server() as base_url:
        yield base_url


def _analyzer(index_dir: Path, base_url: str, **settings: object) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(**{
        "index_dir": index_dir, "provider": "llamacpp", "openai_base_url": base_url,
        "model": MODEL_ALIAS, "temperature": 0, "timeout": 600, "deadline": 900,
        "max_retries": 0,
        # A short bound keeps the suite quick (the grammar is checked against the model's
        # 262k-token vocabulary at every step); the answer is then cut off, which is one of
        # the typed outcomes asserted. The last test gives room for a whole answer.
        "max_tokens": 48, "reask": 0, "top_k": 2, "exemplars_k": 1, **settings})


def _assert_result_or_typed_error(outcome: Outcome) -> None:
    """A result, with the server's token counts and a latency, or a typed answer error
    that kept the tokens spent; never a transport failure or an internal error."""
    if outcome.result is not None:
        meta = outcome.result.meta
        assert meta.backend == "llm" and meta.model == MODEL_ALIAS
        assert meta.usage.input_tokens > 300 and meta.usage.output_tokens > 0
        assert meta.latency_ms > 0 and meta.cost_usd is None
        assert {c.chunk_id for c in outcome.result.citations}
        return
    assert outcome.error is not None
    assert outcome.error["kind"] in ("validation", "truncated", "degenerate"), outcome.error
    details = outcome.error["details"]
    assert details["usage"]["input_tokens"] > 300 and details["usage"]["output_tokens"] > 0
    assert details["attempts"] >= 1 and details["problems"]


def test_json_schema_is_refused_with_the_servers_message(index_dir, real_llm) -> None:
    analyzer = _analyzer(index_dir, real_llm, structured_output="json_schema")
    with pytest.raises(ConfigurationError, match="structured_output") as caught:
        analyzer.analyze(COMPLAINTS[0])
    said = caught.value.details["server_message"]
    assert "response_format" in said
    # The scripted endpoint's copy of this rejection is the server's own text.
    assert said.startswith(LLAMACPP_JSON_SCHEMA_ERROR)


def test_json_mode_ends_in_a_result_or_a_typed_error(index_dir, real_llm) -> None:
    analyzer = _analyzer(index_dir, real_llm, structured_output="json_mode")
    outcome = analyzer.analyze_many(COMPLAINTS[:1], concurrency=1)[0]
    _assert_result_or_typed_error(outcome)


def test_auto_settles_on_function_calling_and_its_answer_parses(index_dir, real_llm) -> None:
    analyzer = _analyzer(index_dir, real_llm, structured_output="auto")
    outcome = analyzer.analyze_many(COMPLAINTS[1:], concurrency=1)[0]

    assert analyzer.llm is not None and analyzer.llm.method == "function_calling"
    _assert_result_or_typed_error(outcome)
    # The grammar holds the model to JSON: the answer parsed, or ran into the bound.
    problems = (outcome.error or {}).get("details", {}).get("problems", [])
    assert not any("not valid JSON" in p for p in problems), problems


def test_a_whole_answer_parses_is_validated_and_the_reask_is_accepted(index_dir,
                                                                       real_llm) -> None:
    # Room for the whole answer and one re-ask, with the recipe's own method: the schema
    # compiled to a grammar for this request (clause numbers and handles as enums).
    analyzer = _analyzer(index_dir, real_llm, max_tokens=420, reask=1)
    outcome = analyzer.analyze_many(COMPLAINTS[1:], concurrency=1)[0]

    _assert_result_or_typed_error(outcome)
    if outcome.error is not None:
        details = outcome.error["details"]
        assert details["attempts"] == 2 and details["usage"]["output_tokens"] > 2 * 100
        # A base model this small copies the prompt (degenerate) or repeats itself up to the
        # bound (the typed cut-off); otherwise what is left is about the content.
        assert outcome.error["kind"] in ("validation", "truncated", "degenerate")
        if outcome.error["kind"] == "validation":
            assert not any("JSON" in p or "cut off" in p for p in details["problems"])
