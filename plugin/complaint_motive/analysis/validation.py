"""Checks on a backend's answer that its schema cannot express, and the repairs that save a
re-ask.

A real model's faults are mostly small: a quote with curly instead of straight quotation
marks, an id in brackets, the primary motive repeated among the secondaries, one invented
citation beside valid ones. ``check_answer`` repairs those itself, says so (each repair is a
warning in ``meta.warnings``) and marks the labels whose evidence it had to drop, so their
confidence level is lowered. What it cannot repair — no valid citation, no verbatim evidence,
a reply that breaks policy — comes back as problems, sentences addressed to the model: the
LLM chain sends them back once as the re-ask. The offline analyzer's answers pass through
the same checks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from ..knowledge.taxonomy import load_taxonomy
from .injection import instruction_words
from .policy import answer_texts, text_violations
from .schema import ModelAnswer, model_facing_schema

#: Labels whose evidence a repair can weaken (enrichment lowers their confidence level).
Weakened = Literal["primary", "stage"]

#: Quotation marks and title/corner brackets: a model adds, drops or swaps them freely.
#: Angle brackets too: the prompt shows them as ‹ › (injection.neutralise).
_QUOTE_MARKS = frozenset("\"'`´“”‘’„‟‚‛«»‹›「」『』《》〈〉〝〞＂＇<>")
#: Sentence punctuation a model writes in another form (。 for ,): all compare as one mark.
_SENTENCE_MARKS = frozenset(",.;:!?、。，．；：！？｡､")
_ELLIPSIS = re.compile(r"…+|⋯+|\.{2,}|。{3,}|．{3,}")
_ID_WRAPPING = "[]【】()()<>《》\"'“”‘’`「」 \t"

#: A model that sets more flags or sources than this has listed the menu, not the complaint.
MAX_RISK_FLAGS = 3
MAX_SOURCES = 3
#: A quote this long (a share of the complaint) is the complaint, not evidence; a complaint
#: of one or two sentences (under _SHORT_COMPLAINT folded characters) may be quoted whole.
_WHOLE_SHARE = 0.8
_SHORT_COMPLAINT = 60


@dataclass
class Checked:
    """An answer after repair: what was repaired, which labels lost evidence, and the
    problems that are left (empty when the answer may be used)."""

    answer: ModelAnswer
    repairs: list[str] = field(default_factory=list)
    weakened: set[Weakened] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


@cache
def _to_simplified() -> Any:
    # opencc-purepy: OpenCC's dictionaries in pure Python, shipped in the wheel (no download,
    # no compiler), so traditional and simplified Chinese compare equal.
    from opencc_purepy import OpenCC

    return OpenCC("t2s")


@cache
def _fold_char(char: str) -> str:
    """One character as quotes are compared: width folded (NFKC), simplified script, lower
    case; quotation marks and spaces vanish, sentence punctuation is one mark."""
    folded = []
    for piece in unicodedata.normalize("NFKC", _to_simplified().convert(char)):
        if piece.isspace() or piece in _QUOTE_MARKS:
            continue
        folded.append("," if piece in _SENTENCE_MARKS else piece.lower())
    return "".join(folded)


def _fold(text: str) -> tuple[str, list[int]]:
    """``text`` folded, with the index in ``text`` each folded character came from."""
    folded: list[str] = []
    origin: list[int] = []
    for position, char in enumerate(text):
        for piece in _fold_char(char):
            folded.append(piece)
            origin.append(position)
    return "".join(folded), origin


def locate(quote: str, text: str) -> list[str] | None:
    """The complaint's own words for ``quote``: one span per part of a quote cut by an
    ellipsis (each part must occur, in order), matched modulo quotation marks and brackets,
    sentence punctuation, width and traditional/simplified script; ``None`` when a part does
    not occur.

    >>> locate("“退款…没人管”", "退款的事拖了半个月,没人管。")
    ['退款', '没人管']
    """
    folded_text, origin = _fold(text)
    parts = [_fold(part)[0].strip(",") for part in _ELLIPSIS.split(quote)]
    parts = [part for part in parts if part]
    if not parts:  # only quotation marks: taken as they are
        stripped = quote.strip()
        return [stripped] if stripped and stripped in text else None
    spans: list[str] = []
    start = 0
    for part in parts:
        found = folded_text.find(part, start)
        if found < 0:
            return None
        end = found + len(part)
        spans.append(text[origin[found]:origin[end - 1] + 1].strip())
        start = end
    return spans


def quote_found(quote: str, text: str) -> bool:
    """Whether an evidence quote occurs in the complaint, as ``locate`` matches it."""
    return locate(quote, text) is not None


def _is_whole(spans: list[str], text: str) -> bool:
    size = len(_fold(text)[0])
    return size >= _SHORT_COMPLAINT and sum(len(_fold(s)[0]) for s in spans) >= (
        _WHOLE_SHARE * size)


def _repair_evidence(quotes: list[str], complaint: str, name: str,
                     checked: Checked) -> list[str]:
    """Verbatim spans for the quotes that match; unmatched or whole-complaint quotes dropped
    while another remains, else a problem."""
    kept: list[str] = []
    rewritten = invented = whole = 0
    for quote in quotes:
        spans = locate(quote, complaint)
        if spans is None:
            invented += 1
        elif _is_whole(spans, complaint):
            whole += 1
        else:
            rewritten += spans != [quote]
            kept += [s for s in spans if s not in kept]
    if rewritten:
        checked.repairs.append(
            f"{name}: {rewritten} quote(s) matched the complaint only after normalising "
            "quotation marks, punctuation, ellipses, width or script; replaced by the "
            "complaint's own words")
    if (invented or whole) and kept:
        checked.repairs.append(f"{name}: dropped {invented + whole} quote(s) not found "
                               "verbatim in the complaint (or quoting all of it)")
        checked.weakened.add("primary" if name.startswith("primary") else "stage")
    elif invented:
        checked.problems.append(f"{name}: these are not verbatim quotes from the complaint: "
                                f"{[q for q in quotes if locate(q, complaint) is None][:3]}; "
                                "quote the complaint's exact words")
    elif whole:
        checked.problems.append(f"{name}: quote the few words that show it, not the whole "
                                "complaint")
    return kept


def normalise_chunk_id(cited: str) -> str:
    """A cited chunk id without the brackets, quotes and spaces a model wraps it in.

    >>> normalise_chunk_id(" [Complaint-Motives#stages] ")
    'complaint-motives#stages'
    """
    return "".join(cited.strip(_ID_WRAPPING).split()).lower()


def _repair_citations(citations: list[str], retrieved: Collection[str],
                      checked: Checked) -> list[str]:
    by_normal = {normalise_chunk_id(c): c for c in retrieved}
    valid: list[str] = []
    invented: list[str] = []
    renamed = 0
    for cited in citations:
        known = cited if cited in retrieved else by_normal.get(normalise_chunk_id(cited))
        if known is None:
            invented.append(cited)
            continue
        renamed += known != cited
        if known not in valid:
            valid.append(known)
    if renamed:
        checked.repairs.append(f"citations: normalised {renamed} chunk id(s) "
                               "(brackets, spaces or case)")
    if not citations:
        checked.problems.append("cite at least one guidance chunk id in citations")
    elif not valid:
        checked.problems.append(f"citations {invented[:3]} are not among the guidance chunks "
                                f"given; cite only these ids: {sorted(retrieved)}")
    elif invented:
        checked.repairs.append(f"citations: dropped {len(invented)} id(s) that name no "
                               "guidance chunk given for this complaint")
    return valid


@cache
def _enum_lists() -> dict[str, frozenset[str]]:
    """The answer's list fields whose items are labels, with the labels each allows."""
    return {name: frozenset(spec["items"]["enum"])
            for name, spec in model_facing_schema()["properties"].items()
            if spec.get("type") == "array" and "enum" in spec.get("items", {})}


def drop_unknown_labels(parsed: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``parsed`` (the model's raw answer) without unknown ids in its label lists, and a
    repair note for each list trimmed. An unknown primary motive or stage stays: that is
    for the model to fix."""
    cleaned, repairs = dict(parsed), []
    for name, allowed in _enum_lists().items():
        value = parsed.get(name)
        if isinstance(value, list):
            known = [v for v in value if isinstance(v, str) and v in allowed]
            if len(known) < len(value):
                cleaned[name] = known
                repairs.append(f"{name}: dropped {len(value) - len(known)} unknown id(s)")
    return cleaned, repairs


def _bounded_flags(answer: ModelAnswer, injection: Collection[str],
                   risk_cues: Collection[str], checked: Checked) -> list[str]:
    """Risk flags bounded: ``injection_attempt`` only with the library's detector's or a
    quote's support, and a flag list longer than MAX_RISK_FLAGS cut to what the cues and
    the motive show."""
    taxonomy = load_taxonomy()
    injection_flag = taxonomy.defaults.injection_flag
    flags = list(dict.fromkeys(f.value for f in answer.risk_flags))
    if injection_flag in flags and not injection and not any(
            instruction_words(q) for q in (*answer.primary_evidence, *answer.stage_evidence)):
        flags.remove(injection_flag)
        checked.repairs.append(f"risk_flags: dropped {injection_flag} (neither the "
                               "library's detector nor a quoted instruction supports it)")
    if len(flags) > MAX_RISK_FLAGS:
        implied = {s.id for s in taxonomy.risk_signals
                   if answer.primary_motive.value in s.implied_by}
        supported = [f for f in flags if f in risk_cues or f in implied
                     or f == injection_flag]  # already checked above
        checked.repairs.append(f"risk_flags: {len(flags)} flags is a list of every risk, "
                               f"not this complaint's; kept the {len(supported)} its words "
                               "show")
        flags = supported
    return flags


def _bounded_sources(answer: ModelAnswer, source_cues: Collection[str],
                     checked: Checked) -> list[str]:
    sources = list(dict.fromkeys(s.value for s in answer.sources))
    if len(sources) > MAX_SOURCES:
        supported = [s for s in sources if s in source_cues]
        checked.repairs.append(f"sources: {len(sources)} sources is every source, not this "
                               f"complaint's; kept the {len(supported)} its words show")
        sources = supported
    return sources


def check_answer(answer: ModelAnswer, complaint: str, retrieved: Collection[str], *,
                 max_promised_amount: float = 0.0, injection: Iterable[str] = (),
                 risk_cues: Collection[str] = (), source_cues: Collection[str] = (),
                 ) -> Checked:
    """Repair what can be repaired in ``answer`` for this complaint and these retrieved
    chunk ids; what is left over is ``problems``.

    ``injection`` is what the library's detector found in the complaint, ``risk_cues`` and
    ``source_cues`` the flags and sources whose cue phrases occur in it."""
    checked = Checked(answer)
    confidences = {}
    for name in ("primary_confidence", "stage_confidence"):
        value = getattr(answer, name)
        if 1.0 < value <= 100.0:  # a percentage, as a real small model wrote it
            confidences[name] = value = value / 100
            checked.repairs.append(f"{name}: read {value * 100:g} as a percentage")
        if not 0.0 <= value <= 1.0:
            checked.problems.append(f"{name} must be between 0 and 1, not {value}")
    primary_evidence = _repair_evidence(answer.primary_evidence, complaint,
                                        "primary_evidence", checked)
    stage_evidence = _repair_evidence(answer.stage_evidence, complaint, "stage_evidence",
                                      checked)
    secondary = list(dict.fromkeys(m.value for m in answer.secondary_motives))
    if answer.primary_motive.value in secondary:
        secondary.remove(answer.primary_motive.value)
        checked.repairs.append("secondary_motives: dropped the primary motive repeated there")
    if len(secondary) > 2:
        checked.repairs.append(f"secondary_motives: kept the first two of {len(secondary)}")
        secondary = secondary[:2]
    steps = answer.specific_steps
    if len(steps) > 2:
        checked.repairs.append(f"specific_steps: kept the first two of {len(steps)}")
        steps = steps[:2]
    citations = _repair_citations(answer.citations, retrieved, checked)
    if not answer.reply.strip():
        checked.problems.append("reply must not be empty")
    # Every text the model writes goes through the reply guard, not the reply alone.
    for name, text in answer_texts(answer, (*primary_evidence, *stage_evidence)).items():
        for violation in text_violations(text, max_promised_amount=max_promised_amount):
            checked.problems.append(f"the {name.replace('_', ' ')} breaks policy "
                                    f"({violation}); rewrite it without that")
    evidenced = answer.model_copy(update={"primary_evidence": primary_evidence,
                                          "stage_evidence": stage_evidence})
    checked.answer = ModelAnswer.model_validate({
        **answer.model_dump(), **confidences, "primary_evidence": primary_evidence,
        "stage_evidence": stage_evidence, "secondary_motives": secondary,
        "specific_steps": steps, "citations": citations,
        "risk_flags": _bounded_flags(evidenced, list(injection), risk_cues, checked),
        "sources": _bounded_sources(answer, source_cues, checked)})
    return checked


def answer_problems(answer: ModelAnswer, complaint: str, retrieved: Collection[str], *,
                    max_promised_amount: float = 0.0) -> list[str]:
    """What ``check_answer`` could not repair in ``answer`` (empty when it may be used)."""
    return check_answer(answer, complaint, retrieved,
                        max_promised_amount=max_promised_amount).problems
