"""Labelled sets as ``evaluate`` reads them: any table ``readers.read_rows`` reads, its
scored columns validated (a bad row is skipped and reported), the rest kept as ``extra``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..analysis.inputs import detect_language
from ..knowledge.exemplars import LabelledComplaint, LineProblem
from ..readers import Row, validation_summary
from .models import FieldMap

log = logging.getLogger(__name__)



_LABELS = ("id", "text", "motive", "stage", "alt_motives", "needs", "risk_flags",
           "legitimacy")
#: What a prediction keeps as its own fields; every other column of the set goes to ``extra``.
_SCORED = (*_LABELS, "lang")
_LISTS = ("alt_motives", "needs", "risk_flags")


#: What ``evaluate`` reads: a path (JSONL, CSV, Parquet), a DataFrame, dicts or items.
Dataset = Path | str | Iterable[Any]


@dataclass(frozen=True)
class LabelledRow:
    """A labelled item as read from a set: where it was, its labels, what else it carried."""

    line: int
    item: LabelledComplaint
    lang: str
    extra: dict[str, Any] = field(default_factory=dict)


def read_labelled_rows(rows: Iterable[Row], fields: FieldMap | None = None
                       ) -> tuple[list[LabelledRow], list[LineProblem], int]:
    """Labelled items from table rows, the problems of the rows that are not (with their
    line), and how many rows had content. Columns outside the labelled schema are kept in
    ``extra``, never a reason to skip; a repeated id is a problem (results are keyed by id)."""
    fields = fields or FieldMap()
    known = set(LabelledComplaint.model_fields)
    items: list[LabelledRow] = []
    problems: list[LineProblem] = []
    first_seen: dict[str, int] = {}
    read = 0
    for row in rows:
        if row.blank:
            continue
        read += 1
        if row.record is None:
            problems.append(LineProblem(line=row.line, message=row.problem or "unreadable"))
            continue
        record = dict(row.record)
        for ours, theirs in fields.model_dump().items():
            if theirs != ours and theirs in record:
                record[ours] = record.pop(theirs)
        record["id"] = _id_text(record.get("id"), row.line)
        for name in _LISTS:
            record[name] = _label_list(record.get(name))
        payload = {k: v for k, v in record.items() if k in known and v is not None}
        try:
            item = _labelled(payload)
        except ValidationError as error:
            problems.append(LineProblem(line=row.line, message=_short(error, fields)))
            continue
        if item.id in first_seen:
            problems.append(LineProblem(line=row.line, message=f"duplicate id {item.id!r} "
                                        f"(first on line {first_seen[item.id]})"))
            continue
        first_seen[item.id] = row.line
        lang = record.get("lang")
        items.append(LabelledRow(
            line=row.line, item=item,
            lang=str(lang) if lang else detect_language(item.text),
            extra={k: v for k, v in record.items() if k not in _SCORED}))
    return items, problems, read


def _labelled(payload: dict[str, Any]) -> LabelledComplaint:
    """The item, or the ``ValidationError`` of its labels. A descriptive column the schema
    also knows (``channel``, ``lang``, ``source``, …) holding values of the analyst's own
    (``channel: "wechat"``) is left out of the item rather than skipping the row: it stays,
    as given, in ``extra`` and the slices."""
    try:
        return LabelledComplaint.model_validate(payload)
    except ValidationError as error:
        wrong = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
        if not wrong or wrong & set(_LABELS) or not wrong <= set(payload):
            raise
        return LabelledComplaint.model_validate(
            {k: v for k, v in payload.items() if k not in wrong})


def _id_text(value: Any, line: int) -> str:
    if value is None:
        return f"line-{line}"
    if isinstance(value, float) and value.is_integer():  # a DataFrame's numeric id column
        value = int(value)
    return str(value)


def _label_list(value: Any) -> Any:
    """A list column as a list: spreadsheets write ``compensation;respect`` or a JSON list."""
    if not isinstance(value, str):
        return value if value is not None else ()
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value  # validation names the column
    return tuple(part.strip() for part in text.replace("|", ";").replace(",", ";").split(";")
                 if part.strip())


def _short(error: ValidationError, fields: FieldMap) -> str:
    return validation_summary(error, fields.model_dump())  # the names the set uses


