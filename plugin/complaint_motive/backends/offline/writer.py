"""The offline backend's answer: the same compact answer an LLM would give, built from the
signals and the taxonomy, with a reply draft that names the customer's issue in their own
words."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...analysis.classifier import MotiveModel, Typical
from ...analysis.clauses import Clause, clause_with
from ...analysis.schema import Confidence, ModelAnswer
from ...knowledge.taxonomy import Motive, ReplyFrame, load_taxonomy
from ...vocab import Language

if TYPE_CHECKING:
    from ...analysis.inputs import ComplaintInput
    from ...analysis.signals import Signals
    from ...knowledge.corpus import Chunk

#: The offline answer: (complaint, its clauses, signals, chunks retrieved).
Ready = tuple["ComplaintInput", list[Clause], "Signals", list["Chunk"]]


def offline_answers(prepared: list[Ready], model: MotiveModel) -> list[ModelAnswer]:
    """The offline answers for a batch (the evidence clauses found in one pass)."""
    typical = model.typical_clauses([(clauses, signals.motive.id, signals.stage.id)
                                     for _, clauses, signals, _ in prepared])
    return [offline_answer(complaint, clauses, signals, chunks, found)
            for (complaint, clauses, signals, chunks), found
            in zip(prepared, typical, strict=True)]


def _level(score: float) -> Confidence:
    """The classifier's probability as the answer's small enum (enrichment reads the
    offline analyzer's own score, not this)."""
    return "high" if score >= 0.8 else "medium" if score >= 0.5 else "low"


def _cue_clauses(clauses: list[Clause], cues: list[str]) -> list[int]:
    """The numbers of the clauses holding ``cues``, in order, each once."""
    found = (clause_with(clauses, cue) for cue in cues)
    return list(dict.fromkeys(c.number for c in found if c is not None))


def offline_answer(complaint: ComplaintInput, clauses: list[Clause], signals: Signals,
                   chunks: list[Chunk], typical: Typical) -> ModelAnswer:
    """Build the same compact answer an LLM would give, from the signals and the taxonomy:
    evidence is the clauses holding the label's cue phrases, else the clause the
    classifier finds most typical of it."""
    taxonomy = load_taxonomy()
    motive, stage = signals.motive, signals.stage
    real_motive = taxonomy.is_motive(motive.id)
    fallback = [typical.motive] if typical.motive else []
    motive_evidence = (_cue_clauses(clauses, signals.motive_cues.get(motive.id, []))
                       or fallback)[:3]
    stage_evidence = (_cue_clauses(clauses, signals.stage_cues.get(stage.id, []))
                      or ([typical.stage] if typical.stage else []))[:3]
    secondary = [a.id for a in signals.motives[1:3]
                 if a.id != motive.id and a.score >= 0.15 and taxonomy.is_motive(a.id)]
    motive_label = taxonomy.motive(motive.id) if real_motive else None
    stage_label = taxonomy.stage(stage.id)
    handles = {c.chunk_id: f"g{n}" for n, c in enumerate(chunks, start=1)}
    cited = [c.chunk_id for c in chunks if real_motive and motive.id in c.motives]
    cited += [c.chunk_id for c in chunks if stage.id in c.stages and c.chunk_id not in cited]
    first = motive_evidence[0] if motive_evidence else 1

    def claims(found: dict[str, list[str]]) -> list[dict[str, object]]:
        return [{"id": label, "clause": (_cue_clauses(clauses, cues) or [first])[0]}
                for label, cues in found.items()][:3]

    language = complaint.language
    frame = taxonomy.reply_frame[language]
    quoted = [clauses[n - 1].text for n in motive_evidence]
    return ModelAnswer.model_validate(dict(
        primary_motive=motive.id, primary_confidence=_level(motive.score),
        primary_evidence=motive_evidence,
        primary_explanation=_explain(frame, motive_label, quoted, language)[:200],
        secondary_motives=secondary, stage=stage.id, stage_confidence=_level(stage.score),
        stage_evidence=stage_evidence,
        stage_explanation=stage_label.explanation[language][:200],
        needs=[{"id": need, "clause": first}
               for need in (motive_label.needs if motive_label else ())][:3],
        leading_need=motive_label.leading_need if motive_label else taxonomy.defaults.leading_need,
        legitimacy=taxonomy.defaults.legitimacy, sources=claims(signals.source_cues),
        risk_flags=claims(signals.risk_cues),
        specific_steps=[],  # the standard steps come from the taxonomy in enrichment
        reply=draft_reply(complaint, clauses, signals, motive.id, stage.id),
        citations=[handles[c] for c in cited][:3] or list(handles.values())[:1]))


_HANDLE = re.compile(r"(?:@\w+|#\w+|https?://\S+)\s*")
_QUOTE_LIMIT = {"zh": 24, "en": 12}  # characters of Chinese, words of English


def draft_reply(complaint: ComplaintInput, clauses: list[Clause], signals: Signals,
                motive_id: str, stage_id: str) -> str:
    """A reply draft that names the customer's issue, and what they ask for, in their own
    words, then answers as the guidance says for the motive and the stage.

    The quotes come from the (masked) complaint; a quote that would make the draft break
    the reply policy (an amount next to "refund", "don't post") is left out, and with it
    the draft falls back to the motive's and stage's own words.
    """
    from ...analysis.policy import reply_violations

    taxonomy = load_taxonomy()
    language = complaint.language
    frame = taxonomy.reply_frame[language]
    real = taxonomy.is_motive(motive_id)
    label = taxonomy.primary_label(motive_id)
    stage_line = (taxonomy.stage(stage_id).reply[language] if taxonomy.has_stage(motive_id)
                  else "")
    issue = _issue_quote(complaint.text, clauses, signals, language)
    ask = None
    if real and taxonomy.motive(motive_id).repeat_ask:
        ask = _clause_with(clauses, signals.motive_cues.get(motive_id, []), language)
        if ask == issue:
            ask = None
    join = " " if language == "en" else ""
    for about, asked in ((issue, ask), (issue, None), (None, None)):
        parts = [frame.opening,
                 frame.about.format(issue=about) if about else "",
                 label.reply[language],
                 frame.asked.format(ask=asked) if asked else "",
                 stage_line, frame.closing]
        draft = join.join(p for p in parts if p)
        if not reply_violations(draft):
            return draft
    return draft


def _quotable(clauses: list[Clause]) -> list[str]:
    """The clauses as a draft may quote them: without @handles, #tags and links."""
    kept = (" ".join(_HANDLE.sub(" ", c.text).split()) for c in clauses)
    return [k for k in kept if k]


def _trimmed(clause: str, language: Language) -> str:
    limit = _QUOTE_LIMIT[language]
    if language == "en":
        words = clause.split()
        return " ".join(words[:limit]) + ("…" if len(words) > limit else "")
    return clause[:limit] + ("…" if len(clause) > limit else "")


def _clause_with(clauses: list[Clause], cues: list[str], language: Language) -> str | None:
    """The (trimmed) clause holding the first of ``cues`` found in the text."""
    for cue in cues:
        for clause in _quotable(clauses):
            if cue.lower() in clause.lower():
                return _trimmed(clause, language)
    return None


def _issue_quote(text: str, clauses: list[Clause], signals: Signals, language: Language
                 ) -> str:
    """What the complaint is about, in its words: the clause naming a source of
    dissatisfaction, else its first substantial clause, else the text itself."""
    cues = [cue for found in signals.source_cues.values() for cue in found]
    found = _clause_with(clauses, cues, language)
    if found:
        return found
    shortest = 2 if language == "en" else 4
    for clause in _quotable(clauses):
        if len(clause.split() if language == "en" else clause) >= shortest:
            return _trimmed(clause, language)
    return _trimmed(" ".join(text.split()), language)


def _explain(frame: ReplyFrame, motive: Motive | None, evidence: list[str],
             language: Language) -> str:
    if motive is None:
        return frame.explain_unclear
    name = motive.zh if language == "zh" else motive.en.lower()
    if not evidence:
        return frame.explain.format(name=name)
    quoted = ("、".join(f"“{e}”" for e in evidence[:2]) if language == "zh"
              else ", ".join(f"'{e}'" for e in evidence[:2]))
    return frame.explain_with_evidence.format(quotes=quoted, name=name)
