"""Agents correct the machine: corrections are appended to a JSONL file, reviewed, and
imported as exemplars that the index and the offline model pick up incrementally."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from ..analysis.privacy import redact
from ..analysis.schema import MotiveAnalysis
from ..errors import InputError
from ..readers import read_jsonl
from .exemplars import LabelledComplaint, read_labelled
from .taxonomy import PrimaryMotiveId, StageId, load_taxonomy


class Correction(BaseModel):
    """One agent correction. The text is stored with personal data masked."""

    id: str
    created_at: str
    text: str
    predicted_motive: str
    predicted_stage: str | None
    motive: PrimaryMotiveId
    stage: StageId | None
    note: str | None = None
    backend: str
    reviewed: bool = Field(False, description="set by a reviewer before import")


def record_correction(result: MotiveAnalysis, *, text: str, motive: str | None = None,
                      stage: str | None = None, note: str | None = None,
                      path: Path, reviewed: bool = False) -> Path:
    """Append a correction of ``result`` (at least one of ``motive`` / ``stage``) to ``path``."""
    if motive is None and stage is None:
        raise InputError("a correction needs the right motive, the right stage, or both")
    masked = redact(text).text
    predicted_stage = result.stage.id if result.stage else None
    try:
        correction = Correction(
            id=hashlib.sha256(masked.encode()).hexdigest()[:12],
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), text=masked,
            predicted_motive=result.primary_motive.id, predicted_stage=predicted_stage,
            motive=motive or result.primary_motive.id,
            # what is not a complaint has no stage (docs/labelling.md)
            stage=stage or predicted_stage
            if load_taxonomy().has_stage(motive or result.primary_motive.id) else None,
            note=note, backend=result.meta.backend, reviewed=reviewed)
    except ValueError as error:
        raise InputError(f"not a taxonomy label: {error.errors()[0]['input']!r}"  # type: ignore[attr-defined]
                         ) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(correction.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_corrections(path: Path) -> list[Correction]:
    """The corrections in ``path``; reviewers edit this file by hand, so a line that no
    longer parses is a typed error naming it."""
    if not path.exists():
        return []
    corrections = []
    for read in read_jsonl(path, Correction):
        if read.item is None:
            raise InputError(f"{read.where} is not a correction ({read.problem}); fix it "
                             "and import again")
        corrections.append(read.item)
    return corrections


def import_corrections(corrections: Path, local_exemplars: Path, *,
                       include_unreviewed: bool = False) -> int:
    """Turn reviewed corrections into exemplars in ``local_exemplars``; returns how many
    were added (a correction already imported is skipped)."""
    existing, _ = read_labelled(local_exemplars) if local_exemplars.exists() else ([], [])
    known = {e.id for e in existing}
    added = [LabelledComplaint(id=f"corr-{c.id}", text=c.text, motive=c.motive, stage=c.stage)
             for c in read_corrections(corrections)
             if (c.reviewed or include_unreviewed) and f"corr-{c.id}" not in known]
    unique = list({e.id: e for e in added}.values())
    if unique:
        local_exemplars.parent.mkdir(parents=True, exist_ok=True)
        with local_exemplars.open("a", encoding="utf-8") as handle:
            for item in unique:
                handle.write(json.dumps(item.model_dump(mode="json", exclude_none=True),
                                        ensure_ascii=False) + "\n")
    return len(unique)
