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
from typing import Annotated, Any, Literal

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
from .clauses import MAX_CLAUSES

#: A confidence as the model gives it: a small enum, not a number a small model invents
#: digits for. Enrichment reads it as a score (CONFIDENCE_SCORES).
Confidence = Literal["low", "medium", "high"]
CONFIDENCE_SCORES: dict[str, float] = {"low": 0.35, "medium": 0.6, "high": 0.85}
#: Guidance chunks are shown to the model as g1…gk (k is at most ``top_k``'s bound).
HANDLES = tuple(f"g{i}" for i in range(1, 21))
_SHORT = 200  # characters of an explanation or a step
REPLY_CHARS = 600

ClauseNumber = Annotated[int, Field(ge=1, le=MAX_CLAUSES)]
Handle = Annotated[str, Field(json_schema_extra={"enum": list(HANDLES)})]


class RiskClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: RiskFlagId
    clause: ClauseNumber = Field(description="the clause that shows it")


class NeedClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: NeedId
    clause: ClauseNumber = Field(description="the clause that shows it")


class SourceClaim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: SourceId
    clause: ClauseNumber = Field(description="the clause that shows it")


# What the model is asked for, and what the offline analyzer answers too: labels and ids
# only, so nothing in it can be copied from the wrong place. Evidence is clause numbers
# (the library quotes the clauses), citations are handles of the guidance shown, each
# claim names the clause that shows it, and every list and string is bounded. Flat and
# free of defaults, which some providers' strict modes reject. The class docstring travels
# to the model as the schema's description.
class ModelAnswer(BaseModel):
    """Analysis of one customer complaint."""

    model_config = ConfigDict(extra="forbid")

    primary_motive: PrimaryMotiveId
    primary_confidence: Confidence
    primary_evidence: list[ClauseNumber] = Field(
        max_length=3, description="numbers of the clauses that show it")
    primary_explanation: str = Field(max_length=_SHORT)
    secondary_motives: list[MotiveId] = Field(max_length=2)
    stage: StageId
    stage_confidence: Confidence
    stage_evidence: list[ClauseNumber] = Field(
        max_length=3, description="numbers of the clauses that show it")
    stage_explanation: str = Field(max_length=_SHORT)
    needs: list[NeedClaim] = Field(max_length=3)
    leading_need: NeedKind
    legitimacy: LegitimacyId
    sources: list[SourceClaim] = Field(max_length=3)
    risk_flags: list[RiskClaim] = Field(max_length=3, description="only risks a clause shows")
    # The standard handling steps and the do-not-say list come from the taxonomy in
    # enrichment: output tokens are the slowest and dearest part of the call.
    specific_steps: list[Annotated[str, Field(max_length=_SHORT)]] = Field(max_length=2)
    reply: str = Field(max_length=REPLY_CHARS)
    citations: list[Handle] = Field(max_length=3, description="handles of the guidance used")


@cache
def model_facing_schema(*, clauses: int = MAX_CLAUSES, handles: int = len(HANDLES),
                        strict: bool = False) -> dict[str, Any]:
    """``ModelAnswer``'s JSON schema with every ``$ref`` inlined: flat, so each field shows
    its allowed labels in place, the shape every provider's structured output accepts.
    Only the top-level title is kept (it names the function in function calling): the
    others repeat the field names and cost ~150 prompt tokens a request.

    ``clauses`` and ``handles`` narrow clause numbers and citations to what this request
    showed (for a grammar compiled per request, which then cannot produce an unknown
    one); evidence and citations then hold at least one. ``strict``: without ``maxItems``,
    ``maxLength``, ``minItems`` and ranges, which strict modes have rejected (validation
    bounds them); clause numbers are an enum there."""
    schema = ModelAnswer.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = definitions[node["$ref"].rsplit("/", 1)[-1]]
                merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
                return inline(merged)
            if node.get("type") == "integer":  # a clause number
                described = {"description": node["description"]} if "description" in node \
                    else {}
                if clauses < MAX_CLAUSES or strict:  # narrowed, or strict: an enum
                    return {"type": "integer", "enum": list(range(1, clauses + 1)),
                            **described}
                return {"type": "integer", "minimum": 1, "maximum": MAX_CLAUSES,
                        **described}
            if node.get("enum") and node["enum"][0] == HANDLES[0]:
                node = {**node, "enum": list(HANDLES[:handles])}
            dropped = {"title", *(("maxItems", "maxLength") if strict else ())}
            return {k: inline(v) for k, v in node.items() if k not in dropped}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    flat = inline(schema)
    if not strict:  # a grammar cannot then leave a label without a clause or a citation
        for name in ("primary_evidence", "stage_evidence", "citations"):
            flat["properties"][name]["minItems"] = 1
    return {**flat, "title": schema["title"]}


def _placeholder(spec: dict[str, Any], description: str | None) -> str:
    if spec.get("type") == "array":
        return f"[{_placeholder(spec['items'], description)}]"
    if spec.get("type") == "object":
        inner = ", ".join(f'"{name}": {_placeholder(sub, sub.get("description"))}'
                          for name, sub in spec["properties"].items())
        return "{" + inner + "}"
    if spec.get("type") == "integer":
        return "<clause number>"
    what = description or "text"
    if spec.get("enum", [None])[0] == HANDLES[0]:
        return f'"<g1, g2 …: {description}>"'
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
    quote: str = Field(description="the clause, in the analysed (masked) text's words")
    turn: int | None = Field(None, description="the conversation turn the quote comes from")
    clause: int | None = Field(None, description="its clause number")
    start: int | None = Field(None, description="where it starts in the text as the caller "
                              "gave it (the turn's text for a conversation passed as turns)")
    end: int | None = Field(None, description="where it ends there (exclusive)")
    masked: bool = Field(False, description="it holds masked personal data: the caller's "
                         "span holds the original")


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
