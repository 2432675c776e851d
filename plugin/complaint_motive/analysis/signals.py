"""What is known about a complaint before any backend runs: the offline classifier's
ranked motives and stages, the taxonomy's cue phrases found in the text (motive, stage,
risk, source), the nearest labelled exemplars, and what the input itself says (a script
the analyzer cannot read, the channel).

Both backends start from the same signals: they steer retrieval (``retrieval``), the
offline answer is built from them, and the LLM's confidence level checks its answer
against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ..knowledge.exemplar_set import motive_votes
from ..knowledge.taxonomy import Label, load_taxonomy
from .schema import Alternative

if TYPE_CHECKING:
    from ..knowledge.index import RetrievedExemplar

#: Below this classifier probability the motive is an honest ``unknown``.
_ABSTAIN_BELOW = 0.2


def find_cues(text: str, labels: tuple[Label, ...]) -> dict[str, list[str]]:
    """Label id → the cue phrases of that label found in the text, as they appear in it,
    in the order they appear."""
    found: dict[str, list[str]] = {}
    for label in labels:
        pattern = _label_pattern(label.cues)
        hits = list(dict.fromkeys(m.group(0) for m in pattern.finditer(text))) if pattern else []
        if hits:
            found[label.id] = hits
    return found


@cache
def _label_pattern(cues: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for all of a label's cues (one scan of the text, not one per cue); where
    two cues start at the same place the longer wins."""
    if not cues:
        return None
    ordered = sorted(cues, key=len, reverse=True)
    return re.compile("|".join(_cue_regex(cue) for cue in ordered), re.IGNORECASE)


def _cue_regex(cue: str) -> str:
    """A cue matches anywhere in Chinese text, but a Latin word only as a whole word: "tm"
    is abuse in "我tm受够了", not in "ATM", and "hell" is not in "Hello"."""
    pattern = re.escape(cue)
    if re.match(r"[A-Za-z0-9]", cue):
        pattern = r"(?<![A-Za-z0-9])" + pattern
    if re.search(r"[A-Za-z0-9]$", cue):
        pattern += r"(?![A-Za-z0-9])"
    return pattern


@dataclass
class Signals:
    """Everything the offline analysis knows about a complaint before any backend runs."""

    motives: list[Alternative]
    stages: list[Alternative]
    motive_cues: dict[str, list[str]]
    stage_cues: dict[str, list[str]]
    risk_cues: dict[str, list[str]]
    source_cues: dict[str, list[str]]
    neighbours: list[RetrievedExemplar]
    unreadable: str | None = None
    channel: str | None = None

    @property
    def motive(self) -> Alternative:
        """The classifier's motive, or an honest ``unknown`` (at a low score) when the text
        cannot be read or the scores are too flat to choose."""
        top = self.motives[0]
        if self.unreadable or top.score < _ABSTAIN_BELOW:
            return Alternative(id=load_taxonomy().defaults.abstain,
                               score=min(top.score, _ABSTAIN_BELOW))
        return top

    @property
    def stage(self) -> Alternative:
        """The classifier's stage, unless the channel fixes it (a regulator filing is a
        complaint made). Cross-validated on real text, overriding the classifier with the
        stage cue phrases ("再不处理…", "I want to complain") cost 2–3 points in both
        languages, so the cues now only give evidence and agreement."""
        channel = load_taxonomy().channel(self.channel) if self.channel else None
        if channel is not None and channel.stage is not None:
            return Alternative(id=channel.stage, score=0.9)
        return self.stages[0]

    def neighbour_agreement(self, motive_id: str) -> float:
        """Share of the similarity-weighted neighbours labelled ``motive_id``."""
        return dict(motive_votes(self.neighbours)).get(motive_id, 0.0)


def collect_signals(text: str, scores: tuple[list[Alternative], list[Alternative]],
                    neighbours: list[RetrievedExemplar], *,
                    unreadable: str | None = None, channel: str | None = None) -> Signals:
    taxonomy = load_taxonomy()
    return Signals(
        motives=scores[0], stages=scores[1], unreadable=unreadable, channel=channel,
        motive_cues=find_cues(text, taxonomy.motives),
        stage_cues=find_cues(text, taxonomy.stages),
        risk_cues=find_cues(text, taxonomy.risk_signals),
        source_cues=find_cues(text, taxonomy.sources), neighbours=neighbours)
