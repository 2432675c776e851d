"""The canonical labels, loaded once from ``corpus/taxonomy.yaml`` into typed objects.

The label enums used by the output schema (``MotiveId``, ``StageId`` …) are built here from
the same file, so a label exists in exactly one place. So are the rules about labels: which
handling principles apply when, the risk floor of a stage or motive (``min_risk``), and the
ids the code falls back on (``defaults``); every id a rule names is checked at load.

>>> from complaint_motive.taxonomy import load_taxonomy
>>> load_taxonomy().motive("venting").zh
'发泄'
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..resources import corpus_dir
from ..vocab import Language as Language  # re-exported: guards.py imports it from here
from ..vocab import Level, NeedKind, level_rank

_L = TypeVar("_L", bound="Label")
_T = TypeVar("_T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Localized(_Frozen, Generic[_T]):
    """The same content in each reply language; both are required."""

    zh: _T
    en: _T

    def __getitem__(self, language: Language) -> _T:
        return self.zh if language == "zh" else self.en


class FrameworkView(_Frozen):
    """What one of the seed documents' motive frameworks calls a motive."""

    framework: str
    name: str
    ref: str


class Label(_Frozen):
    id: str
    zh: str
    en: str
    definition: str = ""
    cues: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()

    def name(self, language: Language) -> str:
        return self.zh if language == "zh" else self.en


class Motive(Label):
    needs: tuple[str, ...]
    leading_need: NeedKind
    frameworks: tuple[FrameworkView, ...]
    handling: Localized[tuple[str, ...]]
    avoid: Localized[tuple[str, ...]]
    reply: Localized[str]
    repeat_ask: bool = Field(False, description="a reply draft repeats what the customer asks "
                             "for in their words (not for threats or insults)")
    min_risk: Level = Field("low", description="the risk level a complaint with this motive "
                            "has at least, whatever its flags")

    @model_validator(mode="after")
    def _same_steps_in_both_languages(self) -> Motive:
        for field in ("handling", "avoid"):
            both: Localized[tuple[str, ...]] = getattr(self, field)
            if not both.zh or len(both.zh) != len(both.en):
                raise ValueError(f"{self.id}: {field} needs the same, non-empty, list of "
                                 "items in zh and en")
        return self


class Stage(Label):
    """``definition`` is the guidance's wording, for the model; ``explanation`` tells an
    agent what the stage means, in the complaint's language."""

    handling: Localized[str]
    explanation: Localized[str]
    reply: Localized[str] = Field(description="the sentence a reply draft adds for the "
                                  "stage (its handling, said to the customer)")
    min_risk: Level = Field("low", description="the risk level a complaint at this stage "
                            "has at least, whatever its flags")


class Channel(Label):
    """Where a text was written, which can fix its stage (docs/labelling.md): filing on a
    complaint platform or with a regulator is the formal act."""

    stage: str | None = Field(None, description="the stage every text from here is at")


class Need(Label):
    kind: NeedKind


class RiskSignal(Label):
    severity: Level
    implied_by: tuple[str, ...] = Field(
        (), description="motives that carry this risk whatever the wording")


def _compiles(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression ({error}): {pattern[:60]!r}") from None
    return patterns


class DoNotSay(_Frozen):
    """A rule a reply draft must keep; ``patterns`` (and, for promises of money,
    ``amount_verbs``) are how the reply guard in ``guards`` enforces it."""

    id: str
    zh: str
    en: str
    refs: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    amount_verbs: tuple[str, ...] = ()

    @field_validator("patterns", "amount_verbs")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _compiles(patterns)

    def text(self, language: Language) -> str:
        return self.zh if language == "zh" else self.en


class InjectionSignal(_Frozen):
    """One family of instructions aimed at the model: phrases on the normalised text, and
    ``squeezed`` ones on it with spaces and punctuation removed."""

    id: str
    patterns: tuple[str, ...]
    squeezed: tuple[str, ...] = ()

    @field_validator("patterns", "squeezed")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _compiles(patterns)


class InjectionRules(_Frozen):
    """What the detector looks for; the flag it raises is ``defaults.injection_flag``."""

    structural: tuple[str, ...] = Field(description="signal ids the code raises itself "
                                        "(fences, role markers, our answer's JSON…)")
    signals: tuple[InjectionSignal, ...]

    @property
    def signal_ids(self) -> tuple[str, ...]:
        return (*(s.id for s in self.signals), *self.structural)


class Abstention(Label):
    reply: Localized[str]


class When(_Frozen):
    """When a handling principle applies: any one condition that holds is enough. Each
    condition lists the ids (or levels) that trigger it."""

    motive: tuple[str, ...] = Field((), description="primary motives, abstentions included")
    stage: tuple[str, ...] = ()
    leading_need: tuple[NeedKind, ...] = ()
    risk: tuple[Level, ...] = Field((), description="risk levels of the result")

    def holds(self, *, motive: str, stage: str, leading_need: str, risk: str) -> bool:
        return (motive in self.motive or stage in self.stage
                or leading_need in self.leading_need or risk in self.risk)


class Principle(Label):
    when: When | None = Field(None, description="absent: the principle always applies")


class Defaults(_Frozen):
    """The ids the code falls back on, named in the taxonomy so no label id is spelled in
    Python."""

    abstain: str = Field(description="the abstention answered when the text cannot be read "
                         "or the scores are too flat to choose")
    no_stage: str = Field(description="the abstention that has no stage (no path to a "
                          "complaint)")
    legitimacy: str = Field(description="the legitimacy the offline analyzer gives: it "
                            "cannot be judged from the text alone")
    leading_need: NeedKind = Field(description="the leading need when the motive is an "
                                   "abstention")
    injection_flag: str = Field(description="the risk flag the library's own injection "
                                "detector raises")


class ReplyFrame(_Frozen):
    opening: str
    closing: str
    explain_with_evidence: str
    explain: str
    explain_unclear: str
    about: str = Field(description="names the customer's issue in their words: {issue}")
    asked: str = Field(description="repeats what they ask for in their words: {ask}")


class Taxonomy(_Frozen):
    version: int
    motives: tuple[Motive, ...]
    abstentions: tuple[Abstention, ...]
    stages: tuple[Stage, ...]
    channels: tuple[Channel, ...]
    needs: tuple[Need, ...]
    legitimacy: tuple[Label, ...]
    sources: tuple[Label, ...]
    risk_signals: tuple[RiskSignal, ...]
    principles: tuple[Principle, ...] = Field(description="in the order a result lists them")
    do_not_say: tuple[DoNotSay, ...]
    defaults: Defaults
    injection: InjectionRules
    reply_frame: Localized[ReplyFrame]
    fingerprint: str = Field(default="", description="content hash of the YAML file")

    @model_validator(mode="after")
    def _every_id_is_real(self) -> Taxonomy:
        """Every id a rule names is a label of the right family (a typo is an error at
        load, not a rule that silently never fires)."""
        motives, abstentions = _ids(self.motives), _ids(self.abstentions)
        stages, needs, flags = _ids(self.stages), _ids(self.needs), _ids(self.risk_signals)
        wrong: list[str] = []

        def check(where: str, named: tuple[str, ...] | str | None, allowed: set[str],
                  family: str) -> None:
            for label_id in (named,) if isinstance(named, str) else named or ():
                if label_id not in allowed:
                    wrong.append(f"{where}: {label_id!r} is not {family}")

        families: dict[str, tuple[Label, ...]] = {
            "motives": self.motives, "abstentions": self.abstentions, "stages": self.stages,
            "channels": self.channels, "needs": self.needs, "legitimacy": self.legitimacy,
            "sources": self.sources, "risk_signals": self.risk_signals,
            "principles": self.principles}
        for family, labels in families.items():
            seen = [label.id for label in labels]
            wrong += [f"{family}: {i!r} is listed twice" for i in dict.fromkeys(seen)
                      if seen.count(i) > 1]
        clash = motives & abstentions
        wrong += [f"abstentions: {i!r} is also a motive" for i in sorted(clash)]
        for motive in self.motives:
            check(f"motive {motive.id}: needs", motive.needs, needs, "a need")
        for channel in self.channels:
            check(f"channel {channel.id}: stage", channel.stage, stages, "a stage")
        for signal in self.risk_signals:
            check(f"risk signal {signal.id}: implied_by", signal.implied_by, motives,
                  "a motive")
        for principle in self.principles:
            if principle.when is not None:
                check(f"principle {principle.id}: when.motive", principle.when.motive,
                      motives | abstentions, "a motive or an abstention")
                check(f"principle {principle.id}: when.stage", principle.when.stage, stages,
                      "a stage")
        check("defaults: abstain", self.defaults.abstain, abstentions, "an abstention")
        check("defaults: no_stage", self.defaults.no_stage, abstentions, "an abstention")
        check("defaults: legitimacy", self.defaults.legitimacy, _ids(self.legitimacy),
              "a legitimacy")
        check("defaults: injection_flag", self.defaults.injection_flag, flags, "a risk signal")
        if wrong:
            raise ValueError("; ".join(wrong))
        return self

    @model_validator(mode="after")
    def _guard_rules_name_real_ids(self) -> Taxonomy:
        ids = self.injection.signal_ids
        if len(set(ids)) != len(ids):
            raise ValueError("injection: a signal id is listed twice")
        for rule in self.do_not_say:
            if rule.amount_verbs and rule.id != "promise_beyond_policy":
                raise ValueError(f"do_not_say {rule.id}: amount_verbs belong to "
                                 "promise_beyond_policy (a promise of money)")
        return self

    def is_motive(self, label_id: str) -> bool:
        """One of the nine motives (not an abstention such as ``unknown``)."""
        return any(m.id == label_id for m in self.motives)

    def motive(self, motive_id: str) -> Motive:
        return _by_id(self.motives, motive_id)

    def stage(self, stage_id: str) -> Stage:
        return _by_id(self.stages, stage_id)

    def channel(self, channel_id: str) -> Channel:
        return _by_id(self.channels, channel_id)

    def risk_signal(self, signal_id: str) -> RiskSignal:
        return _by_id(self.risk_signals, signal_id)

    def primary_label(self, label_id: str) -> Motive | Abstention:
        """A primary motive's label: one of the motives, or an abstention."""
        return (self.motive(label_id) if self.is_motive(label_id)
                else _by_id(self.abstentions, label_id))

    def has_stage(self, motive_id: str) -> bool:
        """Whether a complaint with this primary motive has a stage: what is not a complaint
        is on no path to one."""
        return motive_id != self.defaults.no_stage

    def risk_floor(self, motive_id: str, stage_id: str) -> Level:
        """The lowest risk level the motive and the stage allow (their ``min_risk``)."""
        floors = [self.motive(motive_id).min_risk if self.is_motive(motive_id) else "low",
                  self.stage(stage_id).min_risk]
        return max(floors, key=level_rank)

    def principles_for(self, *, motive: str, stage: str, leading_need: str,
                       risk: Level) -> list[Principle]:
        """The handling principles that apply, in the taxonomy's order: those without a
        ``when`` always, the others when one of their conditions holds."""
        return [p for p in self.principles if p.when is None or p.when.holds(
            motive=motive, stage=stage, leading_need=leading_need, risk=risk)]

    def rule(self, rule_id: str) -> DoNotSay:
        """A do-not-say rule by id."""
        return next(r for r in self.do_not_say if r.id == rule_id)

    def all_refs(self) -> dict[str, set[str]]:
        """Every section reference → the label ids (of any family) that cite it."""
        found: dict[str, set[str]] = {}
        families: list[tuple[Label, ...]] = [
            self.motives, self.stages, self.channels, self.needs, self.legitimacy, self.sources,
            self.risk_signals, self.principles,
        ]
        for family in families:
            for label in family:
                for ref in label.refs:
                    found.setdefault(ref, set()).add(label.id)
        for motive in self.motives:
            for view in motive.frameworks:
                found.setdefault(view.ref, set()).add(motive.id)
        for rule in self.do_not_say:
            for ref in rule.refs:
                found.setdefault(ref, set()).add(rule.id)
        return found

    def motive_ids_for(self, ref: str) -> list[str]:
        """Motives whose guidance includes the section ``ref``."""
        return [m.id for m in self.motives
                if ref in m.refs or any(v.ref == ref for v in m.frameworks)]

    def stage_ids_for(self, ref: str) -> list[str]:
        return [s.id for s in self.stages if ref in s.refs]


def _ids(labels: tuple[Label, ...]) -> set[str]:
    return {label.id for label in labels}


def _by_id(labels: tuple[_L, ...], label_id: str) -> _L:
    for label in labels:
        if label.id == label_id:
            return label
    raise KeyError(label_id)


@cache
def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (cached; the bundled file by default).

    A file that is not valid YAML, or whose rules name an id that is no label of the right
    family, is a ``ConfigurationError`` naming the file and every problem."""
    from ..errors import ConfigurationError
    from ..resources import fingerprint

    path = path or corpus_dir() / "taxonomy.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: not a taxonomy (a mapping of label families)")
    try:
        return Taxonomy.model_validate({**raw, "fingerprint": fingerprint([path])})
    except ValidationError as error:
        problems = "; ".join(
            (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise ConfigurationError(f"{path}: not a valid taxonomy: {problems}") from None


def _enum(name: str, ids: list[str]) -> type[StrEnum]:
    return StrEnum(name, {i: i for i in ids})  # type: ignore[return-value]


if TYPE_CHECKING:  # the checker sees enums; at run time their members come from the YAML
    class MotiveId(StrEnum): ...
    class PrimaryMotiveId(StrEnum): ...
    class StageId(StrEnum): ...
    class ChannelId(StrEnum): ...
    class NeedId(StrEnum): ...
    class LegitimacyId(StrEnum): ...
    class SourceId(StrEnum): ...
    class RiskFlagId(StrEnum): ...
else:
    _T = load_taxonomy()
    #: The nine motives of the taxonomy.
    MotiveId = _enum("MotiveId", [m.id for m in _T.motives])
    #: A primary motive: one of the nine, or an honest abstention.
    PrimaryMotiveId = _enum("PrimaryMotiveId",
                            [m.id for m in (*_T.motives, *_T.abstentions)])
    StageId = _enum("StageId", [s.id for s in _T.stages])
    ChannelId = _enum("ChannelId", [c.id for c in _T.channels])
    NeedId = _enum("NeedId", [n.id for n in _T.needs])
    LegitimacyId = _enum("LegitimacyId", [x.id for x in _T.legitimacy])
    SourceId = _enum("SourceId", [x.id for x in _T.sources])
    RiskFlagId = _enum("RiskFlagId", [x.id for x in _T.risk_signals])
