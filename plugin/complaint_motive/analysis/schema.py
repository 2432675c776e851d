"""The output contract.

``ModelAnswer`` is the compact, flat object a backend produces (the LLM through structured
output, the offline analyzer directly). ``MotiveAnalysis`` is the public result: the answer
validated, enriched from the taxonomy, and stamped with run metadata.

Stable JSON keys that scripts rely on: ``primary_motive.id`` / ``.confidence``,
``secondary_motives[].id``, ``stage.id`` / ``.confidence``, ``risk.level``, ``risk.flags``,
``reply.text``, ``citations[].chunk_id``, ``meta.backend``, ``meta.degraded``,
``meta.warnings``.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ..knowledge.taxonomy import (
    FrameworkView,
    LegitimacyId,
    MotiveId,
    NeedId,
    PrimaryMotiveId,
    RiskFlagId,
    SourceId,
    StageId,
)
from ..vocab import Action, BackendName, Language, Level, NeedKind


# What the model is asked for. Kept flat and free of ranges and defaults, which some
# providers' strict JSON-schema modes reject; validation.py enforces the rest. The class
# docstring travels to the model as the schema's description.
class ModelAnswer(BaseModel):
    """Analysis of one customer complaint."""

    model_config = ConfigDict(extra="forbid")

    primary_motive: PrimaryMotiveId = Field(
        description="why the customer complains; unknown or not_a_complaint when honest")
    primary_confidence: float = Field(description="0 to 1")
    primary_evidence: list[str] = Field(
        description="one to three short verbatim quotes from the complaint that show it")
    primary_explanation: str = Field(description="one short sentence")
    secondary_motives: list[MotiveId] = Field(
        description="at most two other motives present, or empty")
    stage: StageId = Field(description="psychological stage")
    stage_confidence: float = Field(description="0 to 1")
    stage_evidence: list[str] = Field(description="short verbatim quotes that show the stage")
    stage_explanation: str = Field(description="one short sentence")
    needs: list[NeedId]
    leading_need: NeedKind
    legitimacy: LegitimacyId
    sources: list[SourceId] = Field(description="sources of dissatisfaction the text shows")
    risk_flags: list[RiskFlagId] = Field(description="only risks the text shows, or empty")
    # The standard handling steps and the do-not-say list come from the taxonomy in
    # enrichment: output tokens are the slowest and dearest part of the call.
    specific_steps: list[str] = Field(
        description="at most two steps specific to this complaint beyond the standard "
        "handling, or empty")
    reply: str = Field(description="a reply draft for the agent, in the language asked for")
    citations: list[str] = Field(description="ids of the guidance chunks the answer rests on")


@cache
def model_facing_schema() -> dict[str, Any]:
    """``ModelAnswer``'s JSON schema with every ``$ref`` inlined: flat, so each field shows
    its allowed labels in place, the shape every provider's structured output accepts.
    Only the top-level title is kept (it names the function in function calling): the
    others repeat the field names and cost ~150 prompt tokens a request."""
    schema = ModelAnswer.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = definitions[node["$ref"].rsplit("/", 1)[-1]]
                merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
                return inline(merged)
            return {k: inline(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {**inline(schema), "title": schema["title"]}



def _placeholder(spec: dict[str, Any], description: str | None) -> str:
    if spec.get("type") == "array":
        return f"[{_placeholder(spec['items'], description)}]"
    if spec.get("type") == "number":
        return f"<number, {description}>" if description else "<number>"
    what = description or "text"
    if "enum" in spec:
        values = spec["enum"]
        ids = " or ".join(values) if len(values) <= 3 else "an id listed above"
        what = f"{ids}: {description}" if description else ids
    return f'"<{what}>"'


@cache
def answer_skeleton() -> str:
    """The answer's shape for a prompt, one field a line with a placeholder that says what
    goes there: for JSON mode, where the raw JSON Schema, pasted in, was echoed back by a
    small model instead of filled in."""
    properties = model_facing_schema()["properties"]
    lines = [f'  "{name}": {_placeholder(spec, spec.get("description"))}'
             for name, spec in properties.items()]
    return "{\n" + ",\n".join(lines) + "\n}"

class Evidence(BaseModel):
    quote: str
    turn: int | None = Field(None, description="the conversation turn the quote comes from")


class Alternative(BaseModel):
    id: str
    score: float


class LabelCall(BaseModel):
    id: str
    zh: str
    en: str
    confidence: float = Field(ge=0, le=1)
    level: Level
    action: Action
    evidence: list[Evidence] = []
    explanation: str = ""
    alternatives: list[Alternative] = Field(
        [], description="the next most likely labels, with scores")


class PrimaryMotive(LabelCall):
    frameworks: list[FrameworkView] = Field(
        [], description="what each seed framework calls this motive")
    handling: list[str] = []


class StageCall(LabelCall):
    handling: str = ""


# A taxonomy label by id with its names: a secondary motive, a need, a source … (no
# docstring: it would become a description in the published JSON schema).
class NamedLabel(BaseModel):
    id: str
    zh: str
    en: str


class Needs(BaseModel):
    items: list[NamedLabel]
    leading: NeedKind


class Risk(BaseModel):
    level: Level
    flags: list[str]
    evidence: dict[str, list[str]] = Field({}, description="flag id → the phrases that raised it")
    injection_signals: list[str] = Field(
        [], description="why injection_attempt was raised: the detector's signal ids "
        "(instruction_override, role_marker, fence_imitation, answer_json, agent_turn …)")


class Handling(BaseModel):
    steps: list[str]
    avoid: list[str] = Field(description="do-not-say list: taxonomy rules and motive warnings")
    principles: list[NamedLabel]


class Reply(BaseModel):
    text: str
    language: Language
    draft: Literal[True] = Field(True, description="a draft for an agent; never send unread")


class Citation(BaseModel):
    chunk_id: str
    source: str
    title: str
    section: str
    score: float


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(input_tokens=self.input_tokens + other.input_tokens,
                     output_tokens=self.output_tokens + other.output_tokens,
                     total_tokens=self.total_tokens + other.total_tokens)


class Meta(BaseModel):
    backend: BackendName
    model: str
    prompt_version: str
    corpus_version: str
    taxonomy_version: int
    latency_ms: float = Field(description="from the start of preparation to the result; in a "
                              "batch this includes waiting for a free slot")
    attempts: int = 1
    usage: Usage = Usage()
    cost_usd: float | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    warnings: list[str] = []
    redactions: int = Field(0, description="personal-data items masked before analysis")


class MotiveAnalysis(BaseModel):
    """The public result of analysing one complaint."""

    primary_motive: PrimaryMotive
    secondary_motives: list[NamedLabel]
    stage: StageCall | None = Field(description="None when the text is not a complaint: a "
                                    "customer on no path to a complaint has no stage")
    needs: Needs
    legitimacy: NamedLabel
    sources: list[NamedLabel]
    risk: Risk
    handling: Handling
    reply: Reply
    citations: list[Citation]
    meta: Meta


# -- what the analyzer takes (its Runnable input schema) ------------------------------

class InputTurn(BaseModel):
    role: str = Field("customer", description="customer or agent (客户 / 客服 too)")
    text: str


class ComplaintRecord(BaseModel):
    """A complaint with what a helpdesk knows about it."""

    id: str | None = None
    text: str | None = Field(None, description="the complaint, or a '[1] 客户: …' transcript")
    turns: list[InputTurn] | None = Field(None, description="a conversation instead of text")
    language: Language | None = Field(None, description="the reply's language")
    channel: str | None = Field(None, description="where it was written (the taxonomy's "
                                "channels): review, social_post, regulator_filing, …")


class AnalyzerInput(RootModel[str | list[InputTurn] | ComplaintRecord]):
    """What ``invoke`` takes: a text (or transcript), a list of turns, or a record."""
