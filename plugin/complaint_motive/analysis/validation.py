"""Checks on a backend's answer that its schema cannot express, the repairs that save a
re-ask, and the degenerate answers a schema lets through.

The answer holds ids only (clause numbers, guidance handles, labels), so there is nothing
to match or unquote: what a model can still get wrong is a number outside this request's
range (possible where the schema is not compiled per request), a claim the complaint does
not support, a repeated item, an over-long text. ``check_answer`` repairs those itself and
says so (each repair is a warning in ``meta.warnings``), and marks the labels whose
evidence it had to drop, so their confidence level is lowered. What it cannot repair — no
citation, a reply that breaks policy, an answer that loops or that only fills the form
(``degenerate``) — comes back as problems, sentences addressed to the model: the LLM chain
sends them back once as the re-ask. The offline analyzer's answers pass the same checks
(it is built from the text's own cues, so it is never degenerate by these measures).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from ..knowledge.taxonomy import load_taxonomy
from .clauses import Clause
from .injection import instruction_words
from .policy import answer_texts, text_violations
from .schema import ModelAnswer, model_facing_schema

#: Labels whose evidence a repair can weaken (enrichment lowers their confidence level).
Weakened = Literal["primary", "stage"]
#: What makes an answer degenerate: valid, and no answer.
Degenerate = Literal["first_enum_values", "opening_clauses", "copied_reply",
                     "copied_explanation", "looping"]

#: Share of a reply's n-grams found in one source above which it copies that source.
COPY_SHARE = 0.5


@dataclass
class Checked:
    """An answer after repair: what was repaired, which labels lost evidence, the
    problems that are left (empty when the answer may be used) and, among them, the ways
    the answer is degenerate."""

    answer: ModelAnswer
    repairs: list[str] = field(default_factory=list)
    weakened: set[Weakened] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    degenerate: list[Degenerate] = field(default_factory=list)


@cache
def _bounds() -> dict[str, tuple[str, int]]:
    """Each bounded field of the answer: ("items" | "chars", its bound)."""
    bounds = {}
    for name, spec in model_facing_schema()["properties"].items():
        if "maxItems" in spec:
            bounds[name] = ("items", spec["maxItems"])
        elif "maxLength" in spec:
            bounds[name] = ("chars", spec["maxLength"])
    return bounds


@cache
def _enum_lists() -> dict[str, tuple[str, ...]]:
    """The answer's list fields whose items are labels (or claims of labels), with the
    labels each allows, in the schema's order."""
    lists = {}
    for name, spec in model_facing_schema()["properties"].items():
        items = spec.get("items", {}) if spec.get("type") == "array" else {}
        enum = items.get("enum") or items.get("properties", {}).get("id", {}).get("enum")
        if enum and isinstance(enum[0], str):
            lists[name] = tuple(enum)
    return lists


def _label(item: Any) -> Any:
    return item.get("id") if isinstance(item, dict) else item


def tidy(parsed: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``parsed`` (the model's raw answer) with unknown ids dropped from its label lists
    and every list and text cut to its bound (a provider's strict mode cannot carry the
    bounds), and a repair note for each. An unknown primary motive or stage stays: that is
    for the model to fix."""
    cleaned, repairs = dict(parsed), []
    for name, allowed in _enum_lists().items():
        value = parsed.get(name)
        if isinstance(value, list):
            known = [v for v in value if _label(v) in allowed]
            if len(known) < len(value):
                cleaned[name] = known
                repairs.append(f"{name}: dropped {len(value) - len(known)} unknown id(s)")
    for name, (kind, bound) in _bounds().items():
        value = cleaned.get(name)
        if kind == "items" and isinstance(value, list) and len(value) > bound:
            cleaned[name] = value[:bound]
            repairs.append(f"{name}: kept the first {bound} of {len(value)}")
        elif kind == "chars" and isinstance(value, str) and len(value) > bound:
            cleaned[name] = value[:bound]
            repairs.append(f"{name}: cut to {bound} characters")
    steps = cleaned.get("specific_steps")
    if isinstance(steps, list):
        cleaned["specific_steps"] = [s[:200] if isinstance(s, str) else s for s in steps]
    return cleaned, repairs


def _in_range(numbers: list[int], count: int, name: str, checked: Checked) -> list[int]:
    kept = list(dict.fromkeys(n for n in numbers if 1 <= n <= count))
    if len(kept) < len(numbers):
        checked.repairs.append(f"{name}: dropped {len(numbers) - len(kept)} clause number(s) "
                               f"outside 1–{count} or repeated")
    return kept


# -- degenerate answers ------------------------------------------------------------------

def _grams(text: str) -> set[str]:
    """Word 3-grams of Latin text and character 6-grams of the rest: the units a copied
    passage shares with its source."""
    words = re.findall(r"[A-Za-z0-9']+", text.lower())
    grams = {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}
    han = re.sub(r"[\sA-Za-z0-9'\W]+", "", text)
    grams |= {han[i:i + 6] for i in range(len(han) - 5)}
    return grams


def copy_share(text: str, source: str) -> float:
    """Share of ``text``'s n-grams that occur in ``source`` (0 for a text too short to
    have any)."""
    mine = _grams(text)
    return len(mine & _grams(source)) / len(mine) if mine else 0.0


_QUOTED = re.compile(r"[“\"「『‘]([^”\"」』’]{2,80})[”\"」』’]")
_REPEAT = re.compile(r"(.{6,}?)\1{2,}", re.DOTALL)


def looping(text: str) -> str | None:
    """A passage repeated three times or more in a row (a model caught in a loop)."""
    match = _REPEAT.search(text)
    return match.group(1)[:40] if match else None


def degenerate_kinds(answer: ModelAnswer, clauses: Sequence[Clause],
                     sources: dict[str, str]) -> list[tuple[Degenerate, str]]:
    """The ways ``answer`` is valid and still no answer, each with the sentence that tells
    the model: label lists that are the schema's first values in order, evidence that is
    the opening clauses whatever they say, a reply copied from ``sources`` (name → text:
    the prompt's rules, each guidance chunk, each exemplar, the complaint), an explanation
    copied from any of them but the complaint, a looping text."""
    found: list[tuple[Degenerate, str]] = []
    dumped = answer.model_dump(mode="json")
    for name, allowed in _enum_lists().items():
        if name == "citations":  # handles are ranked: g1, g2 is the best guidance first
            continue
        labels = [_label(v) for v in dumped[name]]
        if name == "secondary_motives":  # filled on from the primary: venting, respect, …
            labels = [dumped["primary_motive"], *labels]
        if len(labels) >= (3 if name == "secondary_motives" else 2) \
                and tuple(labels) == allowed[:len(labels)]:
            found.append(("first_enum_values", f"{name} lists the first ids of the list "
                          "in order; give only those the complaint shows, or none"))
            break
    opening = [list(range(1, len(e) + 1)) == e and len(e) >= 2
               for e in (answer.primary_evidence, answer.stage_evidence)]
    if all(opening) and len(clauses) >= 4:
        found.append(("opening_clauses", "the evidence is the opening clauses for both the "
                      "motive and the stage; give the numbers of the clauses that show each"))
    for name, source in sources.items():
        if copy_share(answer.reply, source) >= COPY_SHARE:
            found.append(("copied_reply", f"the reply copies the {name}; write the agent's "
                          "own reply to this customer"))
            break
    for name in ("primary_explanation", "stage_explanation"):  # the complaint may be cited
        said = getattr(answer, name)
        copied = next((source for source, text in sources.items() if source != "complaint"
                       and copy_share(said, text) >= COPY_SHARE), None)
        if copied is not None:
            found.append(("copied_explanation", f"the {name.replace('_', ' ')} copies the "
                          f"{copied}; say what in this complaint shows the label"))
            break
    for name in ("reply", "primary_explanation", "stage_explanation"):
        if (passage := looping(getattr(answer, name))) is not None:
            found.append(("looping", f"the {name.replace('_', ' ')} repeats "
                          f"{passage!r}; answer again, shorter"))
            break
    return found


# -- claims tied to the text ---------------------------------------------------------------

def _flag_supported(answer: ModelAnswer, clauses: Sequence[Clause],
                    injection: Collection[str], risk_cues: Collection[str]
                    ) -> Callable[[Any], bool]:
    """Whether the library's cues or the motive support a risk flag: each raises a risk
    level and may escalate a case, so a model's word alone is not enough.
    ``injection_attempt`` stands with the library's detector, or an instruction in the
    clause it names."""
    taxonomy = load_taxonomy()
    injection_flag = taxonomy.defaults.injection_flag
    implied = {s.id for s in taxonomy.risk_signals
               if answer.primary_motive.value in s.implied_by}

    def supported(claim: Any) -> bool:
        flag = claim.id.value
        if flag == injection_flag:
            return bool(injection) or (claim.clause <= len(clauses) and bool(
                instruction_words(clauses[claim.clause - 1].text)))
        return flag in risk_cues or flag in implied

    return supported


def _supported(claims: Iterable[Any], supported: Callable[[Any], bool], name: str,
               why: str, checked: Checked) -> list[Any]:
    """The claims ``supported`` keeps, each label once; the dropped ones are a repair."""
    kept: list[Any] = []
    dropped = []
    for claim in claims:
        label = claim.id.value
        if label in {k.id.value for k in kept}:
            continue
        if supported(claim):
            kept.append(claim)
        else:
            dropped.append(label)
    if dropped:
        checked.repairs.append(f"{name}: dropped {dropped} ({why})")
    return kept


def check_answer(answer: ModelAnswer, clauses: Sequence[Clause], handles: int, *,
                 max_promised_amount: float = 0.0, injection: Iterable[str] = (),
                 risk_cues: Collection[str] = (), source_cues: Collection[str] = (),
                 sources: dict[str, str] | None = None) -> Checked:
    """Repair what can be repaired in ``answer`` for a complaint of these ``clauses`` and
    ``handles`` guidance chunks shown; what is left over is ``problems``.

    ``injection`` is what the library's detector found in the complaint, ``risk_cues`` and
    ``source_cues`` the flags and sources whose cue phrases occur in it. ``sources`` (the
    texts a model could copy its reply from) turns on the degenerate-answer checks: a
    model's answer is checked, the offline analyzer's is not."""
    taxonomy = load_taxonomy()
    checked = Checked(answer)
    count = len(clauses)
    primary_evidence = _in_range(answer.primary_evidence, count, "primary_evidence", checked)
    stage_evidence = _in_range(answer.stage_evidence, count, "stage_evidence", checked)
    # A label that kept some of its evidence, but not all, is weakened; one left with
    # none is judged without evidence (enrichment's level already says so).
    for name, kept, given in (("primary", primary_evidence, answer.primary_evidence),
                              ("stage", stage_evidence, answer.stage_evidence)):
        if kept and len(kept) < len(given):
            checked.weakened.add(name)  # type: ignore[arg-type]
    secondary = list(dict.fromkeys(m.value for m in answer.secondary_motives))
    if answer.primary_motive.value in secondary:
        secondary.remove(answer.primary_motive.value)
        checked.repairs.append("secondary_motives: dropped the primary motive repeated there")
    citations = list(dict.fromkeys(h for h in answer.citations if int(h[1:]) <= handles))
    if len(citations) < len(answer.citations):
        checked.repairs.append(f"citations: dropped {len(answer.citations) - len(citations)} "
                               f"handle(s) outside g1–g{handles} or repeated")
    if not citations:
        checked.problems.append(f"cite at least one guidance handle (g1–g{handles}) in "
                                "citations")
    if not answer.reply.strip():
        checked.problems.append("reply must not be empty")
    # The complaint's words quoted back (its evidence clauses, or a part of one in
    # quotation marks) are the customer's demand, not the model's promise.
    words = "\n".join(c.text for c in clauses)
    quoted = [clauses[n - 1].text for n in (*primary_evidence, *stage_evidence)]
    quoted += [q for text in (answer.primary_explanation, answer.stage_explanation)
               for q in _QUOTED.findall(text) if q in words]
    # Every text the model writes goes through the reply guard, not the reply alone.
    for name, text in answer_texts(answer, quoted).items():
        for violation in text_violations(text, max_promised_amount=max_promised_amount):
            checked.problems.append(f"the {name.replace('_', ' ')} breaks policy "
                                    f"({violation}); rewrite it without that")
    if sources is not None:
        for kind, problem in degenerate_kinds(answer, clauses, sources):
            checked.degenerate.append(kind)
            checked.problems.append(problem)
    motive_needs = {n for m in (answer.primary_motive.value, *secondary)
                    if taxonomy.is_motive(m) for n in taxonomy.motive(m).needs}
    unsupported = "nothing in the complaint or the motive supports them"
    checked.answer = ModelAnswer.model_validate({
        **answer.model_dump(), "primary_evidence": primary_evidence,
        "stage_evidence": stage_evidence, "secondary_motives": secondary,
        "citations": citations,
        "risk_flags": [c.model_dump() for c in _supported(
            answer.risk_flags, _flag_supported(answer, clauses, list(injection), risk_cues),
            "risk_flags", "no cue in the complaint supports them", checked)],
        "needs": [c.model_dump() for c in _supported(
            answer.needs, lambda c: c.id.value in motive_needs, "needs", unsupported,
            checked)],
        "sources": [c.model_dump() for c in _supported(
            answer.sources, lambda c: c.id.value in source_cues, "sources", unsupported,
            checked)]})
    return checked
