"""The labelled injection set (corpus/eval/injection.jsonl) and the detector's measure on it.

Each line is an injection attempt (``label: injection``, by ``family``) or a benign
complaint (real customers' words, named by the evaluation or exemplar line they are, or
``written-here`` texts that mention systems, instructions or JSON innocently). ``split``
fixes, by a hash of the id, the half used while developing the detector (``dev``) and the
half it is reported on (``test``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complaint_motive.analysis.injection import detect_injection
from complaint_motive.analysis.inputs import to_input

SET = Path(__file__).resolve().parents[1] / "corpus" / "eval" / "injection.jsonl"


def _lines_by_id(path: Path) -> dict[str, dict[str, Any]]:
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return {line["id"]: line for line in lines}


def read_set(split: str | None = None) -> list[dict[str, Any]]:
    """The set's rows; a benign real text is named by ``from`` (``FILE#id`` under
    ``corpus/``) rather than copied, and gets its text, language and source from there."""
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line]
    files: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if "from" in row:
            name, line_id = row["from"].split("#")
            if name not in files:
                files[name] = _lines_by_id(SET.parents[1] / name)
            origin = files[name][line_id]
            row.update(text=origin["text"], lang=origin["lang"], source=origin["source"])
    return [r for r in rows if split is None or r["split"] == split]


def flagged(row: dict[str, Any]) -> bool:
    """Whether the detector flags the row, read the way the analyzer reads input."""
    complaint = to_input({k: row[k] for k in ("text", "turns") if k in row},
                         max_chars=20_000)
    return bool(detect_injection(complaint))


@dataclass
class Measure:
    recall: dict[str, float]          # per injection family, and "all"
    false_alarms: dict[str, float]    # per benign family, and "all"
    counts: dict[str, int]
    missed: list[str]                 # ids, never texts: look only at the dev split's
    false_alarm_ids: list[str]


def measure(split: str) -> Measure:
    hits: dict[str, list[bool]] = defaultdict(list)
    alarms: dict[str, list[bool]] = defaultdict(list)
    missed, raised = [], []
    for row in read_set(split):
        found = flagged(row)
        if row["label"] == "injection":
            hits[row["family"]].append(found)
            hits["all"].append(found)
            if not found:
                missed.append(row["id"])
        else:
            alarms[row["family"]].append(found)
            alarms["all"].append(found)
            if found:
                raised.append(row["id"])
    return Measure(
        recall={f: sum(v) / len(v) for f, v in hits.items()},
        false_alarms={f: sum(v) / len(v) for f, v in alarms.items()},
        counts={f"injection.{f}": len(v) for f, v in hits.items()}
        | {f"benign.{f}": len(v) for f, v in alarms.items()},
        missed=missed, false_alarm_ids=raised)
