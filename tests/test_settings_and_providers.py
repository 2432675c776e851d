"""Settings precedence, the config command, and provider recipes against endpoints shaped
like each provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from complaint_motive import ConfigurationError, MotiveAnalyzer
from complaint_motive.providers import PROVIDERS
from complaint_motive.settings import Settings
from complaint_motive.surfaces.cli import app
from scripted_llm import ScriptedEndpoint, error, good_answer, llamacpp_like


def test_precedence_keywords_then_environment_then_toml(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "cm.toml"
    config.write_text('model = "from-toml"\ntop_k = 6\ntimeout = 9.5\n', encoding="utf-8")
    monkeypatch.setenv("COMPLAINT_MOTIVE_CONFIG_FILE", str(config))
    assert Settings().model == "from-toml" and Settings().top_k == 6
    monkeypatch.setenv("COMPLAINT_MOTIVE_MODEL", "from-env")
    assert Settings().model == "from-env" and Settings().timeout == 9.5
    assert Settings(model="from-kwargs").model == "from-kwargs"


def test_openai_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://llm.local/v1")
    settings = Settings()
    assert settings.resolved_backend() == "llm"
    assert settings.openai_base_url == "http://llm.local/v1"
    assert settings.openai_api_key.get_secret_value() == "sk-secret-value"


def test_config_command_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    out = CliRunner().invoke(app, ["config", "--format", "json"])
    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert data["openai_api_key"] == "***" and "sk-secret-value" not in out.stdout
    assert data["resolved_backend"] == "llm"


def test_invalid_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLAINT_MOTIVE_TOP_K", "many")
    out = CliRunner().invoke(app, ["config"])
    assert out.exit_code == 3 and "top_k" in out.stderr


def _shaped(provider: str) -> ScriptedEndpoint:
    """An endpoint that accepts only what the real provider accepts."""
    def respond(body, seen):
        response_format = (body.get("response_format") or {}).get("type")
        if provider == "deepseek" and response_format == "json_schema":
            return error(400, "This response_format type is unavailable now")
        if provider == "deepseek" and "json" not in seen.text.lower():
            return error(400, "Prompt must contain the word 'json'")
        if provider == "qwen" and response_format == "json_schema":
            return error(400, "response_format json_schema is not supported by this model")
        if provider == "llamacpp":
            return llamacpp_like(body, seen)
        return good_answer(seen)

    return ScriptedEndpoint(default=respond)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_provider_recipe_works_against_an_endpoint_shaped_like_it(
        provider: str, index_dir: Path) -> None:
    endpoint = _shaped(provider)
    analyzer = MotiveAnalyzer.from_settings(index_dir=index_dir, provider=provider,
                                            openai_api_key="sk", **endpoint.clients())
    result = analyzer.analyze("退货寄回去十天了,退款还没到,你们到底收到没有?")
    assert result.meta.backend == "llm"
    assert result.meta.model == PROVIDERS[provider]["model"]
    sent = endpoint.requests[0].body
    assert sent["model"] == PROVIDERS[provider]["model"]
    method = PROVIDERS[provider]["structured_output"]
    assert ("tools" in sent) == (method == "function_calling")


def test_the_wrong_method_for_a_provider_says_what_to_change(index_dir: Path) -> None:
    endpoint = _shaped("deepseek")
    analyzer = MotiveAnalyzer.from_settings(index_dir=index_dir, openai_api_key="sk",
                                            structured_output="json_schema",
                                            **endpoint.clients())
    with pytest.raises(ConfigurationError, match="structured_output"):
        analyzer.analyze("退款还没到")
