"""From a validated answer to the public ``MotiveAnalysis``: add what the taxonomy knows
(framework views, the standard handling steps, the do-not-say list, principles, sources),
the confidence levels and the actions they map to."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from ..knowledge.taxonomy import Label, load_taxonomy
from ..vocab import Level, level_of_rank, level_rank
from .clauses import MASK, Clause, place
from .policy import do_not_say
from .schema import (
    CONFIDENCE_SCORES,
    Alternative,
    Citation,
    Evidence,
    Handling,
    Meta,
    ModelAnswer,
    MotiveAnalysis,
    NamedLabel,
    Needs,
    PrimaryMotive,
    Reply,
    Risk,
    StageCall,
)

if TYPE_CHECKING:
    from ..knowledge.corpus import Chunk
    from ..settings import Settings
    from .injection import InjectionReport
    from .inputs import ComplaintInput
    from .signals import Signals


def confidence_level(*, score: float, agreement: float, evidence: bool,
                     backend: str, offline_agrees: bool = False) -> Level:
    """A coarse level from measured signals (the evaluation reports accuracy per level).

    Offline: the classifier's calibrated probability (so 0.8 means about 80% of such calls
    are right) and how many nearest exemplars share the label.
    LLM: whether the offline analyzer agrees, the model's own score, and evidence found.
    """
    if backend == "offline":
        if score >= 0.8 and agreement >= 0.4:
            return "high"
        return "medium" if score >= 0.5 else "low"
    if offline_agrees and score >= 0.7 and evidence:
        return "high"
    return "medium" if offline_agrees or (score >= 0.6 and evidence) else "low"


def lowered(level: Level) -> Level:
    """One level down: for a label whose evidence a repair had to drop."""
    return level_of_rank(level_rank(level) - 1)


def _named(label: Label) -> NamedLabel:
    return NamedLabel(id=label.id, zh=label.zh, en=label.en)


def build_analysis(answer: ModelAnswer, *, complaint: ComplaintInput, clauses: list[Clause],
                   signals: Signals, chunks: list[Chunk], meta: Meta, settings: Settings,
                   injection: InjectionReport,
                   weakened: Collection[str] = ()) -> MotiveAnalysis:
    """The public result for a validated ``answer``. ``weakened`` names the labels
    ("primary", "stage") whose evidence validation dropped: their level is one lower.
    An LLM label the offline analyzer does not share, on a text that carries an injection,
    is ``low`` (for human review): the model may have obeyed it."""
    taxonomy = load_taxonomy()
    backend = meta.backend
    motive_id, stage_id = answer.primary_motive.value, answer.stage.value
    offline_motive, offline_stage = signals.motive, signals.stage

    def evidence(numbers: list[int]) -> list[Evidence]:
        found = []
        for clause in (clauses[n - 1] for n in numbers if 1 <= n <= len(clauses)):
            start, end = place(complaint, clause) or (None, None)
            found.append(Evidence(quote=clause.text, turn=clause.turn, clause=clause.number,
                                  start=start, end=end, masked=bool(MASK.search(clause.text))))
        return found

    # The offline analyzer's own calibrated probability; a model's small enum as a score.
    offline = backend == "offline"
    motive_score = offline_motive.score if offline and offline_motive.id == motive_id \
        else CONFIDENCE_SCORES[answer.primary_confidence]
    stage_score = offline_stage.score if offline and offline_stage.id == stage_id \
        else CONFIDENCE_SCORES[answer.stage_confidence]
    motive_level = confidence_level(
        score=motive_score, agreement=signals.neighbour_agreement(motive_id),
        evidence=bool(answer.primary_evidence), backend=backend,
        offline_agrees=offline_motive.id == motive_id)
    stage_level = confidence_level(
        score=stage_score, agreement=1.0 if stage_id in signals.stage_cues else 0.0,
        evidence=bool(answer.stage_evidence), backend=backend,
        offline_agrees=offline_stage.id == stage_id)
    if "primary" in weakened:
        motive_level = lowered(motive_level)
    if "stage" in weakened:
        stage_level = lowered(stage_level)
    if injection and backend == "llm":
        if offline_motive.id != motive_id:
            motive_level = "low"
        if offline_stage.id != stage_id:
            stage_level = "low"
    real = taxonomy.is_motive(motive_id)
    motive_label = taxonomy.primary_label(motive_id)
    stage_label = taxonomy.stage(stage_id)

    flags = list(dict.fromkeys(f.id.value for f in answer.risk_flags))
    risk_evidence = {flag: quotes for flag, quotes in signals.risk_cues.items() if flag in flags}
    for claim in answer.risk_flags:  # a flag the cues did not raise: the clause it names
        if claim.id.value not in risk_evidence and 1 <= claim.clause <= len(clauses):
            risk_evidence[claim.id.value] = [clauses[claim.clause - 1].text]
    primary_quotes = [e.quote for e in evidence(answer.primary_evidence)]
    if injection:
        flag = taxonomy.defaults.injection_flag
        if flag not in flags:
            flags.append(flag)
        risk_evidence[flag] = list(injection.evidence[:3])
    for signal in taxonomy.risk_signals:  # a motive that is a risk however it is worded
        if motive_id in signal.implied_by and signal.id not in flags:
            flags.append(signal.id)
            risk_evidence[signal.id] = primary_quotes[:3]
    risk_level = max([taxonomy.risk_floor(motive_id, stage_id),
                      *(taxonomy.risk_signal(f).severity for f in flags)], key=level_rank)

    cited = [chunks[int(handle[1:]) - 1] for handle in dict.fromkeys(answer.citations)
             if int(handle[1:]) <= len(chunks)]
    language = complaint.language
    return MotiveAnalysis(
        primary_motive=PrimaryMotive(
            id=motive_id, zh=motive_label.zh, en=motive_label.en,
            confidence=motive_score, level=motive_level,
            action=settings.actions[motive_level],
            evidence=evidence(answer.primary_evidence),
            explanation=answer.primary_explanation,
            alternatives=[a for a in signals.motives if a.id != motive_id][:3],
            frameworks=list(taxonomy.motive(motive_id).frameworks) if real else [],
            handling=list(taxonomy.motive(motive_id).handling[language]) if real else []),
        secondary_motives=[_named(taxonomy.motive(m.value)) for m in answer.secondary_motives],
        stage=None if not taxonomy.has_stage(motive_id) else StageCall(
            id=stage_id, zh=stage_label.zh, en=stage_label.en,
            confidence=stage_score, level=stage_level,
            action=settings.actions[stage_level], evidence=evidence(answer.stage_evidence),
            explanation=answer.stage_explanation,
            alternatives=[Alternative(id=a.id, score=a.score) for a in signals.stages
                          if a.id != stage_id][:2],
            handling=stage_label.handling[language]),
        needs=Needs(items=[_named(next(n for n in taxonomy.needs if n.id == need.id.value))
                           for need in answer.needs], leading=answer.leading_need),
        legitimacy=_named(next(x for x in taxonomy.legitimacy
                               if x.id == answer.legitimacy.value)),
        sources=[_named(next(x for x in taxonomy.sources if x.id == s.id.value))
                 for s in answer.sources],
        risk=Risk(level=risk_level, flags=flags, evidence=risk_evidence,
                  injection_signals=list(injection.signals)),
        handling=Handling(
            # The taxonomy's standard steps for the motive and the stage, then the few the
            # model found specific to this complaint.
            steps=list(dict.fromkeys([
                *(taxonomy.motive(motive_id).handling[language] if real else ()),
                stage_label.handling[language], *answer.specific_steps])),
            avoid=do_not_say(language, motive_id),
            principles=[_named(p) for p in taxonomy.principles_for(
                motive=motive_id, stage=stage_id, leading_need=answer.leading_need,
                risk=risk_level)]),
        reply=Reply(text=answer.reply, language=language),
        citations=[Citation(chunk_id=c.chunk_id, source=c.source, title=c.title,
                            section=c.section, score=c.score) for c in cited],
        meta=meta)
