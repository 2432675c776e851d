"""One line-numbered JSONL reader serves exemplars, corrections, predictions and resumed
batch output: a bad line is that line's problem, named by file and line, never quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from complaint_motive.errors import InputError
from complaint_motive.knowledge.exemplars import LabelledComplaint, load_exemplars, read_labelled
from complaint_motive.readers import read_jsonl

_GOOD = '{"id": "a", "text": "退款还没到", "motive": "compensation"}'


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    lines = [_GOOD, "", '{"id": "b", "text": "我的电话13812345678", "motive": "greed"}',
             "{not json", "[1, 2]"]
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n\xff\n")
    read = list(read_jsonl(path, LabelledComplaint))
    assert [r.line for r in read] == [1, 3, 4, 5, 6]  # the blank line 2 is skipped
    assert read[0].item is not None and read[0].item.id == "a"
    problems = [r.problem or "" for r in read[1:]]
    assert problems[0].startswith("motive: Input should be")
    assert problems[1].startswith("not JSON") and problems[2] == "not a JSON object"
    assert problems[3].startswith("not utf-8 text")
    assert all("13812345678" not in p for p in problems)  # the line is never quoted
    assert read[1].where == f"{path}: line 3"


def test_a_bad_exemplar_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "exemplars.jsonl"
    path.write_text(f"{_GOOD}\n{{oops\n", encoding="utf-8")
    items, problems = read_labelled(path)
    assert [i.id for i in items] == ["a"] and problems[0].line == 2
    with pytest.raises(InputError, match=f"{path}: line 2: not JSON"):
        load_exemplars(path)
