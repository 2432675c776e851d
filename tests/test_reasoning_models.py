"""Reasoning and thinking models: each recipe and setting against a scripted endpoint that
rejects what the real provider rejects (the provider's documented error quoted)."""

from __future__ import annotations

import json

import httpx
import pytest

from complaint_motive import ConfigurationError, MotiveAnalyzer
from complaint_motive.providers import OLLAMA_CONTEXT_TOKENS, PROVIDERS
from scripted_llm import ScriptedEndpoint, completion, error, good_answer

COMPLAINT = "退货寄回去十天了,退款还没到,你们到底收到没有?"


def _analyzer(index_dir, endpoint: ScriptedEndpoint, **settings) -> MotiveAnalyzer:
    return MotiveAnalyzer.from_settings(index_dir=index_dir, backend="llm",
                                        openai_api_key="sk-test", **settings,
                                        **endpoint.clients())


def _openai_reasoning(body, seen):
    """OpenAI: o-series and gpt-5 (not -chat) refuse a temperature; o-series even 1.
    Documented 400: "Unsupported value: 'temperature' does not support 0 with this model.
    Only the default (1) value is supported." (param temperature, code unsupported_value)."""
    model, effort = body["model"], body.get("reasoning_effort")
    strict = model.startswith("o") or (model.startswith("gpt-5") and "chat" not in model
                                       and effort != "none")
    if strict and "temperature" in body and body["temperature"] != 1:
        return httpx.Response(400, json={"error": {
            "message": f"Unsupported value: 'temperature' does not support "
                       f"{body['temperature']} with this model. Only the default (1) value "
                       "is supported.", "type": "invalid_request_error",
            "param": "temperature", "code": "unsupported_value"}})
    return good_answer(seen)


@pytest.mark.parametrize(("model", "effort", "sends_temperature"), [
    ("gpt-4o-mini", None, True), ("o4-mini", "low", False), ("o3", None, False),
    ("gpt-5-mini", "minimal", False), ("gpt-5-mini", "none", True),
    ("gpt-5-chat-latest", None, True),
])
def test_reasoning_models_get_no_temperature_they_reject(index_dir, model, effort,
                                                          sends_temperature) -> None:
    # A caller who asks for repeatable runs: the temperature goes only where it is accepted.
    endpoint = ScriptedEndpoint(default=_openai_reasoning)
    analyzer = _analyzer(index_dir, endpoint, model=model, reasoning_effort=effort,
                         temperature=0)
    assert analyzer.analyze(COMPLAINT).meta.backend == "llm"
    sent = endpoint.requests[0].body
    assert ("temperature" in sent) == sends_temperature
    assert sent.get("reasoning_effort") == effort


def _deepseek(body, seen):
    """DeepSeek after 2026-07-24: the old names are gone; thinking is on unless disabled
    ("思考模式默认打开"), and thinking mode refuses a forced tool ("Thinking mode does not
    support this tool_choice")."""
    if body["model"] in ("deepseek-chat", "deepseek-reasoner"):
        return error(400, "Model Not Exist")
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return error(400, "This response_format type is unavailable now")
    thinking = (body.get("thinking") or {}).get("type", "enabled") == "enabled"
    if thinking and isinstance(body.get("tool_choice"), dict | str) and body.get(
            "tool_choice") != "auto":
        return error(400, "Thinking mode does not support this tool_choice")
    response = completion(seen, good_answer(seen))
    if thinking:  # reasoning beside the answer; it holds JSON-looking text on purpose
        data = response.json()
        data["choices"][0]["message"]["reasoning_content"] = (
            '先想想。也许是 {"primary_motive": "venting", "stage": "complaint"}?')
        return httpx.Response(200, json=data)
    return response


def test_deepseek_recipe_uses_a_current_model_with_thinking_off(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=_deepseek)
    analyzer = _analyzer(index_dir, endpoint, provider="deepseek")
    result = analyzer.analyze(COMPLAINT)
    sent = endpoint.requests[0].body
    assert sent["model"] == "deepseek-flash" and result.meta.model == "deepseek-flash"
    assert sent["thinking"] == {"type": "disabled"}
    assert sent["response_format"] == {"type": "json_object"}


def test_deepseek_reasoning_content_never_reaches_the_parser(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=_deepseek)
    analyzer = _analyzer(index_dir, endpoint, provider="deepseek",
                         extra_body={"thinking": {"type": "enabled"}}, reasoning_effort="high")
    result = analyzer.analyze(COMPLAINT)
    assert endpoint.requests[0].body["thinking"] == {"type": "enabled"}
    # The labels come from the answer, not from the reasoning's guess.
    assert result.primary_motive.id == "compensation" and result.meta.attempts == 1


def _dashscope(body, seen):
    """DashScope compatible mode, an open-source Qwen3 model (thinking on by default).
    Documented 400s in thinking mode: "<400> InternalError.Algo.InvalidParameter: The
    tool_choice parameter does not support being set to required or object in thinking
    mode" and "<400> InternalError.Algo.InvalidParameter: Json mode response is not
    supported when enable_thinking is true"."""
    if body.get("enable_thinking", True):
        if isinstance(body.get("tool_choice"), dict) or body.get("tool_choice") == "required":
            return error(400, "<400> InternalError.Algo.InvalidParameter: The tool_choice "
                              "parameter does not support being set to required or object "
                              "in thinking mode")
        if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
            return error(400, "<400> InternalError.Algo.InvalidParameter: Json mode response "
                              "is not supported when enable_thinking is true")
    return good_answer(seen)


def test_qwen_recipe_turns_thinking_off_and_dashscope_accepts_the_tool_call(index_dir) -> None:
    endpoint = ScriptedEndpoint(default=_dashscope)
    result = _analyzer(index_dir, endpoint, provider="qwen").analyze(COMPLAINT)
    sent = endpoint.requests[0].body
    assert result.meta.backend == "llm"
    assert sent["enable_thinking"] is False
    assert isinstance(sent["tool_choice"], dict)  # the forced tool DashScope now accepts


@pytest.mark.parametrize("method", ["function_calling", "json_mode"])
def test_qwen_in_thinking_mode_is_a_configuration_error_that_says_how(index_dir,
                                                                      method) -> None:
    endpoint = ScriptedEndpoint(default=_dashscope)
    analyzer = _analyzer(index_dir, endpoint, provider="qwen", structured_output=method,
                         extra_body={"enable_thinking": True}, max_retries=2)
    with pytest.raises(ConfigurationError, match="enable_thinking") as caught:
        analyzer.analyze(COMPLAINT)
    assert "thinking mode" in caught.value.message
    assert len(endpoint.requests) == 1  # a rejection is not retried


@pytest.mark.parametrize("method", ["json_schema", "json_mode"])
def test_think_block_in_the_content_is_kept_out_of_the_json(index_dir, method) -> None:
    """Qwen3 served without a reasoning parser (llama.cpp, vLLM, Ollama) writes its thinking
    into the content before the JSON."""
    def thinking_aloud(body, seen):
        answer = json.dumps(good_answer(seen), ensure_ascii=False)
        return completion(seen, f'<think>\n用户要退款。{{"primary_motive": "venting"}}\n'
                                f"</think>\n\n{answer}")

    endpoint = ScriptedEndpoint(default=thinking_aloud)
    result = _analyzer(index_dir, endpoint, provider="vllm",
                       structured_output=method).analyze(COMPLAINT)
    assert result.primary_motive.id == "compensation"
    assert result.meta.attempts == 1  # parsed at once, not re-asked


def test_ollama_context_length_covers_the_longest_prompt(index_dir) -> None:
    """Ollama's /v1 endpoint takes no num_ctx and silently drops what exceeds its context
    (its docs: "< 24 GiB VRAM: 4k context", raised with ``OLLAMA_CONTEXT_LENGTH=…``). The
    length the recipe asks for holds the longest complaint's prompt, counting one token per
    character (a ceiling for Chinese and far above English), and room for the answer."""
    endpoint = ScriptedEndpoint()
    analyzer = _analyzer(index_dir, endpoint, provider="ollama")
    longest = ("快递三次没送到,客服一直推脱,我要求赔偿并道歉。" * 400)[:analyzer.settings.max_chars]
    analyzer.analyze(longest)
    prompt_chars = sum(len(str(m.get("content") or "")) for m in endpoint.requests[0].body[
        "messages"])
    assert prompt_chars + 2048 <= OLLAMA_CONTEXT_TOKENS
    assert PROVIDERS["ollama"]["openai_base_url"].endswith(":11434/v1")
