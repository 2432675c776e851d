"""Labelled example complaints: few-shot examples for the LLM, neighbours and training data
for the offline analyzer, and the format of the evaluation sets."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..readers import read_jsonl
from ..resources import corpus_dir
from ..vocab import Language
from .taxonomy import ChannelId, LegitimacyId, NeedId, PrimaryMotiveId, RiskFlagId, StageId


class LabelledComplaint(BaseModel):
    """One labelled complaint, as in ``corpus/exemplars.jsonl`` and ``corpus/eval/*.jsonl``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    text: str = Field(min_length=1)
    motive: PrimaryMotiveId
    stage: StageId | None = None
    alt_motives: tuple[PrimaryMotiveId, ...] = ()
    needs: tuple[NeedId, ...] = ()
    risk_flags: tuple[RiskFlagId, ...] = ()
    legitimacy: LegitimacyId | None = None
    domain: str | None = None
    # Provenance (docs/labelling.md): real texts name where they come from.
    lang: Language | None = None
    channel: ChannelId | None = None
    source: str | None = None
    second_motive: PrimaryMotiveId | None = Field(
        None, description="a second annotator's blind primary motive (inter-annotator "
        "agreement)")

    def as_input(self) -> dict[str, str]:
        """The record an analyzer is given for this item: the text, and the channel when
        known (a helpdesk knows where a ticket came from)."""
        return {"text": self.text, **({"channel": self.channel.value} if self.channel else {})}


class LineProblem(BaseModel):
    """A line of a JSONL file that could not be read, kept so nothing is dropped silently."""

    line: int
    message: str


def read_labelled(path: Path) -> tuple[list[LabelledComplaint], list[LineProblem]]:
    """Read a labelled JSONL file; malformed lines come back as problems with line numbers."""
    items: list[LabelledComplaint] = []
    problems: list[LineProblem] = []
    first_seen: dict[str, int] = {}
    for read in read_jsonl(path, LabelledComplaint):
        number, item = read.line, read.item
        if item is None:
            problems.append(LineProblem(line=number, message=read.problem or "unreadable"))
            continue
        if item.id in first_seen:  # results are keyed by id: a second one would hide the first
            problems.append(LineProblem(line=number, message=f"duplicate id {item.id!r} "
                                        f"(first on line {first_seen[item.id]})"))
            continue
        first_seen[item.id] = number
        items.append(item)
    return items, problems


def load_exemplars(path: Path | None = None) -> list[LabelledComplaint]:
    """The bundled exemplars; a malformed line is an error, since we ship this file."""
    path = path or exemplars_path()
    items, problems = read_labelled(path)
    if problems:
        raise InputError(f"{path}: line {problems[0].line}: {problems[0].message}")
    return items


def exemplars_path() -> Path:
    return corpus_dir() / "exemplars.jsonl"
