"""Settings, in one documented precedence (highest first):

1. keyword arguments (``Settings(model="…")`` or ``MotiveAnalyzer.from_settings(model="…")``)
2. environment variables: ``COMPLAINT_MOTIVE_<FIELD>``, plus ``OPENAI_API_KEY`` and
   ``OPENAI_BASE_URL``
3. a TOML file: ``$COMPLAINT_MOTIVE_CONFIG_FILE``, else ``./complaint-motive.toml`` if present
4. the defaults below

``complaint-motive config`` prints the effective values with secrets masked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .vocab import (
    Action,
    BackendName,
    BackendSetting,
    Fallback,
    Level,
    ReplyLanguage,
    SentenceEncoder,
)

#: json_object_schema: JSON mode with the schema in ``response_format`` (llama.cpp's
#: servers compile it to a grammar per request; the prompt carries no schema).
StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode",
                                 "json_object_schema"]
TokenLimitParam = Literal["auto", "max_tokens", "max_completion_tokens"]
#: The model OpenAI's own API gets when none is set; any other endpoint must be told.
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
#: List prices, USD per million input and output tokens.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.5, 10.0), "deepseek-chat": (0.27, 1.10)}


def _alias(name: str, *extra: str) -> Any:
    return AliasChoices(name, f"COMPLAINT_MOTIVE_{name.upper()}", *extra)


def default_index_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "complaint-motive" / "index"


class Settings(BaseSettings):
    """Every knob of the library; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(env_prefix="COMPLAINT_MOTIVE_", extra="ignore",
                                      populate_by_name=True)

    # -- backend selection -------------------------------------------------------------
    backend: BackendSetting = Field("auto", description="auto: the LLM when an API key or base URL "
                             "is set, else offline")
    fallback: Fallback = Field(
        "none", description="on backend failure, answer with the offline analyzer (degraded)")

    # -- the LLM ----------------------------------------------------------------------
    provider: Literal["openai", "azure", "deepseek", "qwen", "vllm", "ollama",
                      "llamacpp"] | None = Field(
        None, description="fill base URL, model and structured-output method from a recipe "
        "(providers.py); explicit settings win")
    openai_api_key: SecretStr | None = Field(None, validation_alias=_alias(
        "openai_api_key", "OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_alias(
        "openai_base_url", "OPENAI_BASE_URL"))
    model: str | None = Field(
        None, description=f"the chat model; unset: {DEFAULT_OPENAI_MODEL} on OpenAI's own API, "
        "while an endpoint given by base URL must be told its model")
    structured_output: StructuredOutputMethod | Literal["auto"] = Field(
        "json_schema", description="json_schema (OpenAI, vLLM, Ollama), function_calling "
        "(Azure, Qwen), json_mode (DeepSeek), json_object_schema (llama.cpp); auto tries "
        "the first three in that order once per process")
    temperature: float | None = Field(None, description="unset: not sent (the model's own "
                                      "default); never sent to models that reject it; 0 "
                                      "for repeatable runs")
    max_tokens: int = Field(800, ge=1, description="the output bound sent with every call")
    token_limit_param: TokenLimitParam = Field(
        "auto", description="the request field that carries max_tokens; auto: "
        "max_completion_tokens for o-series and gpt-5 models, max_tokens otherwise")
    stream: bool = Field(False, description="stream answers: a client that gives up closes "
                         "the connection, which stops a local server generating")
    timeout: float = Field(30.0, gt=0, description="seconds per LLM request")
    max_retries: int = Field(2, ge=0, description="transport retries (timeouts, 429, 5xx)")
    reask: int = Field(1, ge=0, le=1, description="1: when validation cannot repair an "
                       "answer, show the model its answer and the problems once; 0: never")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open the "
                                  "circuit breaker")
    breaker_cooldown: float = Field(30.0, ge=0, description="seconds the breaker stays open")
    deadline: float = Field(120.0, gt=0, description="seconds one LLM request may take in "
                            "all (timeout bounds only the wait between two bytes)")
    rate_limit_wait: float = Field(120.0, ge=0, description="seconds one complaint may wait "
                                   "out rate limits (429, shared by the batch) before failing")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None \
        = Field(None, description="for reasoning models (o-series, gpt-5, DeepSeek and Qwen "
                "in thinking mode); unset: not sent")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="provider fields sent as they are with every "
        "request, e.g. {'enable_thinking': False} (Qwen) or {'thinking': {'type': "
        "'disabled'}} (DeepSeek)")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million input and output tokens, by model")

    # -- the index --------------------------------------------------------------------
    index_dir: Path = Field(default_factory=default_index_dir)
    chroma_host: str | None = Field(None, description="use a Chroma server instead of the "
                                    "embedded store")
    chroma_port: int = 8000
    chroma_ssl: bool = False
    embedding_provider: Literal["hashing", "openai"] = "hashing"
    embedding_model: str = "text-embedding-3-small"
    embedding_base_url: str | None = None
    embedding_api_key: SecretStr | None = None
    embedding_dimensions: int = Field(2048, ge=64)
    offline_sentence_encoder: SentenceEncoder = Field(
        "none", description="use: add a multilingual sentence embedding (the 'use' extra) "
        "to the offline classifier's features: more accurate on English, about half the "
        "throughput (README, Evaluation)")
    top_k: int = Field(4, ge=1, le=20, description="guidance chunks given to the backend")
    exemplars_k: int = Field(3, ge=0, le=10, description="few-shot exemplars for the LLM")

    # -- input and output guards ----------------------------------------------------------
    max_chars: int = Field(8000, ge=1)
    truncate: bool = Field(False, description="truncate over-long text with a warning "
                           "instead of refusing it")
    redact_pii: bool = Field(True, description="mask personal data before it leaves "
                             "the process")
    max_promised_amount: float = Field(0.0, ge=0, description="largest money amount a "
                                       "reply draft may promise")
    reply_language: ReplyLanguage = Field(
        "auto", description="language of the reply, steps and explanations: auto follows "
        "the complaint's script; zh or en fixes it (a helpdesk channel's language)")

    # -- what callers do with confidence -------------------------------------------------
    actions: dict[Level, Action] = Field(
        default_factory=lambda: {"high": "preselect", "medium": "suggest",  # type: ignore[arg-type,dict-item]
                                 "low": "human_review"})

    corrections_file: Path = Field(Path("corrections.jsonl"),
                                   description="where agents' corrections are appended")
    local_exemplars_file: Path | None = Field(
        None, description="exemplars added here (e.g. imported corrections); default "
        "<index_dir>/exemplars.local.jsonl")

    @property
    def local_exemplars(self) -> Path:
        return self.local_exemplars_file or self.index_dir / "exemplars.local.jsonl"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("COMPLAINT_MOTIVE_CONFIG_FILE") or "complaint-motive.toml"
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    @model_validator(mode="after")
    def _apply_provider(self) -> Settings:
        if self.provider is not None:
            from .providers import PROVIDERS

            for key, value in PROVIDERS[self.provider].items():
                if key not in self.model_fields_set:
                    setattr(self, key, value)
        if self.model is None and self.openai_base_url is None:
            self.model = DEFAULT_OPENAI_MODEL
        return self

    @property
    def token_limit_field(self) -> Literal["max_tokens", "max_completion_tokens"]:
        """Where ``max_tokens`` goes in the request: OpenAI's reasoning models (o1, o3,
        o4-mini, gpt-5…) refuse ``max_tokens``; most other servers know only it."""
        if self.token_limit_param != "auto":
            return self.token_limit_param
        name = (self.model or "").rsplit("/", 1)[-1].lower()
        return "max_completion_tokens" if re.match(r"o\d|gpt-5", name) else "max_tokens"

    def price(self) -> tuple[float, float] | None:
        """USD per million input and output tokens for the model, if known. An endpoint
        configured by base URL without a provider recipe is priced only from ``prices`` set
        by the user: the defaults are list prices, which a self-hosted server does not
        charge."""
        custom_endpoint = self.openai_base_url is not None and self.provider is None
        if self.model is None or (custom_endpoint and self.prices == DEFAULT_PRICES):
            return None
        return self.prices.get(self.model)

    @property
    def llm_configured(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None

    def resolved_backend(self) -> BackendName:
        if self.backend == "auto":
            return "llm" if self.llm_configured else "offline"
        return self.backend

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets shown as ``***``."""
        data = self.model_dump(mode="json")
        for key, value in self:
            if isinstance(value, SecretStr):
                data[key] = "***"
        return data


def load_settings(base: Settings | None = None, **overrides: Any) -> Settings:
    """Settings from every source with ``overrides`` on top (and on top of ``base`` when
    given); a bad value is a ``ConfigurationError`` naming the setting."""
    from pydantic import ValidationError

    from .errors import ConfigurationError

    try:
        if base is None:
            return Settings(**overrides)
        return Settings(**{**dict(base), **overrides}) if overrides else base
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigurationError(f"invalid setting {where}: {first['msg']} "
                                 f"(got {str(first.get('input'))[:60]!r})") from None
