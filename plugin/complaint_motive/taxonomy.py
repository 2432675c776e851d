"""The canonical labels, loaded once from ``corpus/taxonomy.yaml`` into typed objects.

The label enums used by the output schema (``MotiveId``, ``StageId`` …) are built here from
the same file, so a label exists in exactly one place.

>>> from complaint_motive.taxonomy import load_taxonomy
>>> load_taxonomy().motive("venting").zh
'发泄'
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .resources import corpus_dir

Language = Literal["zh", "en"]
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
    leading_need: Literal["rational", "emotional"]
    frameworks: tuple[FrameworkView, ...]
    handling: Localized[tuple[str, ...]]
    avoid: Localized[tuple[str, ...]]
    reply: Localized[str]
    repeat_ask: bool = Field(False, description="a reply draft repeats what the customer asks "
                             "for in their words (not for threats or insults)")

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


class Channel(Label):
    """Where a text was written, which can fix its stage (docs/labelling.md): filing on a
    complaint platform or with a regulator is the formal act."""

    stage: str | None = Field(None, description="the stage every text from here is at")


class Need(Label):
    kind: Literal["rational", "emotional"]


class RiskSignal(Label):
    severity: Literal["low", "medium", "high"]
    implied_by: tuple[str, ...] = Field(
        (), description="motives that carry this risk whatever the wording")


class DoNotSay(_Frozen):
    id: str
    zh: str
    en: str
    refs: tuple[str, ...] = ()

    def text(self, language: Language) -> str:
        return self.zh if language == "zh" else self.en


class Abstention(Label):
    reply: Localized[str]


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
    principles: tuple[Label, ...]
    do_not_say: tuple[DoNotSay, ...]
    reply_frame: Localized[ReplyFrame]
    fingerprint: str = Field(default="", description="content hash of the YAML file")

    @model_validator(mode="after")
    def _channels_name_real_stages(self) -> Taxonomy:
        stages = {s.id for s in self.stages}
        for channel in self.channels:
            if channel.stage is not None and channel.stage not in stages:
                raise ValueError(f"channel {channel.id}: {channel.stage!r} is not a stage")
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


def _by_id(labels: tuple[_L, ...], label_id: str) -> _L:
    for label in labels:
        if label.id == label_id:
            return label
    raise KeyError(label_id)


@cache
def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (cached; the bundled file by default)."""
    from .resources import fingerprint

    path = path or corpus_dir() / "taxonomy.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Taxonomy.model_validate({**raw, "fingerprint": fingerprint([path])})


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
