"""The complaint as numbered clauses: the one segmentation the whole library uses.

The model is shown the complaint clause by clause, ``(3) 退款拖了半个月``, and answers
evidence as clause numbers; the offline analyzer's evidence is clauses too; the library
turns a number back into the complaint's own words and their place in the caller's text.
So a quote is verbatim by construction, and no model can copy it from the wrong place.

A clause ends at sentence punctuation or a line break, never inside a number, a time, a
date, an amount or an address: ``7.14号早晨7.59分``, ``¥1,299.00``, ``gmail.com`` and
``v2.3`` stay whole.

>>> [c.text for c in segment("7.14号早晨7.59分下单,到现在没发货!客服说 wait 3.5 days.")]
['7.14号早晨7.59分下单', '到现在没发货', '客服说 wait 3.5 days']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inputs import ComplaintInput

#: More clauses than this are merged pairwise: the model's clause numbers are an enum, and
#: a long complaint's every comma is not worth a number.
MAX_CLAUSES = 40

# Chinese punctuation always ends a clause; an ASCII comma or full stop only when it is not
# between digits (1,299 / 7.14) and, for a full stop, not followed by a letter or digit
# (gmail.com), nor after a title (Mr.). The enumeration comma 、 lists things inside one
# clause.
_TITLES = "".join(rf"(?<!\b{t})"
                  for t in ("Mr", "Mrs", "Ms", "Dr", "St", "vs", "etc", "e.g", "i.e"))
_BREAK = re.compile(r"[，。！？；\n…~～!?;]+|(?<!\d),|,(?!\d)|\.{2,}"
                    rf"|{_TITLES}\.(?![0-9A-Za-z])")
_WORD = re.compile(r"\w")
#: A masking placeholder (privacy.redact writes these), so evidence can say it is masked.
MASK = re.compile(r"\[(?:email|id_number|bank_card|phone|landline|passport|us_ssn|hk_id|iban)\]")


@dataclass(frozen=True)
class Clause:
    """One clause: its number (1-based over the whole complaint), its words, its place in
    the analysed text, and the conversation turn it belongs to (None for plain text)."""

    number: int
    text: str
    start: int
    end: int
    turn: int | None = None


def _pieces(text: str) -> list[tuple[int, int]]:
    """(start, end) of each stripped piece between breaks that holds a word character."""
    spans, position = [], 0
    bounds = [(m.start(), m.end()) for m in _BREAK.finditer(text)] + [(len(text), len(text))]
    for stop, resume in bounds:
        piece = text[position:stop]
        if _WORD.search(piece):
            lead = len(piece) - len(piece.lstrip())
            spans.append((position + lead, position + len(piece.rstrip())))
        position = resume
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Neighbours merged pairwise until at most MAX_CLAUSES are left."""
    while len(spans) > MAX_CLAUSES:
        spans = [(spans[i][0], spans[min(i + 1, len(spans) - 1)][1])
                 for i in range(0, len(spans), 2)]
    return spans


def segment(text: str, turn_starts: Sequence[tuple[int, int]] = ()) -> list[Clause]:
    """``text`` as numbered clauses. ``turn_starts`` gives (offset, turn number) for each
    customer turn in ``text``, in order: a clause never crosses a turn (turns are joined
    by line breaks, which end clauses)."""
    clauses = []
    for number, (start, end) in enumerate(_merged(_pieces(text)), start=1):
        turn = None
        for offset, turn_number in turn_starts:
            if offset <= start:
                turn = turn_number
        clauses.append(Clause(number, text[start:end], start, end, turn))
    return clauses


def clauses_of(complaint: ComplaintInput) -> list[Clause]:
    """The customer's words in ``complaint`` as numbered clauses, turns kept."""
    starts, offset = [], 0
    for turn in complaint.turns:
        if turn.role == "customer":
            starts.append((offset, turn.number))
            offset += len(turn.text) + 1
    return segment(complaint.text, starts)


def numbered(clauses: Sequence[Clause], shown: Callable[[str], str] = str) -> str:
    """The clauses as the model sees them: ``(n) words``, one a line, each turn's clauses
    under its ``[turn]`` number. ``shown`` is applied to each clause's words (the
    prompt neutralises each on its own, so a role marker opening a clause is seen as
    one)."""
    lines, turn = [], None
    for clause in clauses:
        if clause.turn is not None and clause.turn != turn:
            turn = clause.turn
            lines.append(f"[{turn}] customer:")
        lines.append(f"({clause.number}) {shown(clause.text)}")
    return "\n".join(lines)


def clause_at(clauses: Sequence[Clause], offset: int) -> Clause | None:
    """The clause holding the character at ``offset`` of the analysed text."""
    for clause in clauses:
        if clause.start <= offset < clause.end:
            return clause
    return None


def clause_with(clauses: Sequence[Clause], phrase: str) -> Clause | None:
    """The first clause holding ``phrase`` (case folded), or None."""
    wanted = phrase.lower()
    for clause in clauses:
        if wanted in clause.text.lower():
            return clause
    return None


def place(complaint: ComplaintInput, clause: Clause) -> tuple[int, int] | None:
    """``clause``'s (start, end) in the text the caller gave: the string, or the turn's
    text for a conversation passed as turns; None where it cannot be placed (all of it
    masked, or an input made in code)."""
    if complaint.turns_given and clause.turn is not None:
        offset = 0
        for turn in complaint.turns:
            if turn.role != "customer":
                continue
            if turn.number == clause.turn:
                return _placement(turn.text, turn.given).span(clause.start - offset,
                                                              clause.end - offset)
            offset += len(turn.text) + 1
        return None
    if not complaint.given:
        return None
    return _placement(complaint.text, complaint.given).span(clause.start, clause.end)


@lru_cache(maxsize=256)
def _placement(analysed: str, original: str) -> Placement:
    return Placement(analysed, original)


class Placement:
    """Where the analysed text's characters stand in the caller's own text (which the
    guards cleaned and masked): offsets a helpdesk UI can highlight."""

    def __init__(self, analysed: str, original: str) -> None:
        self._map: dict[int, int] = {}
        matcher = difflib.SequenceMatcher(None, analysed, original, autojunk=False)
        for a, b, size in matcher.get_matching_blocks():
            for i in range(size):
                self._map[a + i] = b + i

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """The caller's (start, end) for the analysed text's [start, end): from its first
        to its last character found there; None when none is (all masked)."""
        found = [self._map[i] for i in range(start, end) if i in self._map]
        return (found[0], found[-1] + 1) if found else None
