"""One reader for every kind of table an analyst hands us: JSONL, CSV, Parquet, a pandas
DataFrame or any iterable of dicts. Each row comes with the line (or row) number a person
would look for, and a row that cannot be read comes back as that row's problem, never as
an exception that loses the rest.

>>> for row in read_rows(Path("set.csv")):            # doctest: +SKIP
...     row.line, row.record, row.problem
(2, {'id': 'a-1', 'text': '退款还没到账', 'motive': 'compensation'}, None)
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError, InputError

M = TypeVar("M", bound=BaseModel)
TableFormat = Literal["jsonl", "csv", "parquet"]

#: Tried in order when a CSV file does not say (no BOM) and is not valid UTF-8: Chinese
#: spreadsheet exports are GBK, which GB18030 contains.
_FALLBACK_ENCODINGS = ("gb18030",)
#: What ``surrogateescape`` decoding leaves for a byte the encoding could not decode.
_UNDECODED = re.compile("[\udc80-\udcff]")
_SUFFIXES: dict[str, TableFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                                     ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Row:
    """One row of a table: its record, or why it could not be read (``problem``).
    ``blank`` rows (empty lines of a JSONL file) carry neither."""

    line: int
    record: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def blank(self) -> bool:
        return self.record is None and self.problem is None


def table_format(path: Path, given: str | None = None) -> TableFormat:
    """The format named by ``given`` or, failing that, by the file's suffix (JSONL when the
    suffix says nothing)."""
    if given:
        if given not in ("jsonl", "csv", "parquet"):
            raise InputError(f"unknown table format {given!r}: use jsonl, csv or parquet")
        return given  # type: ignore[return-value]
    return _SUFFIXES.get(path.suffix.lower(), "jsonl")


def read_rows(source: Path | str | Iterable[Mapping[str, Any]] | Any, *,
              format: str | None = None, encoding: str | None = None) -> Iterator[Row]:
    """Rows of ``source``: a file path (JSONL, CSV or Parquet, by suffix or ``format``), a
    pandas DataFrame, or an iterable of dicts. ``encoding`` fixes a text file's encoding;
    otherwise a BOM decides, then UTF-8, then GB18030 (CSV).

    Line numbers are those an editor shows: a JSONL file's line, a CSV record's first line
    (the header is line 1), a Parquet or in-memory row's position counting from 1."""
    if isinstance(source, str | Path):
        path = Path(source)
        kind = table_format(path, format)
        if kind == "parquet":
            return _parquet_rows(path)
        if kind == "csv":
            return _csv_rows(path, encoding)
        return _jsonl_rows(path, encoding)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return _mapping_rows(source.to_dict(orient="records"))
    if isinstance(source, bytes | bytearray | Mapping):
        raise InputError("a table is a path, a DataFrame or an iterable of dicts, not "
                         f"{type(source).__name__}")
    return _mapping_rows(source)


def plain(value: Any) -> Any:
    """A cell as JSON-ready data: NaN and empty cells become None, dates ISO text, numpy
    scalars Python numbers; anything else unknown becomes its text."""
    if value is None or isinstance(value, bool | int | str):
        return None if value == "" else value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays, pandas' own scalar types
        return plain(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _mapping_rows(records: Iterable[Any]) -> Iterator[Row]:
    for number, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            yield Row(number, problem=f"row {number}: not a record ({type(record).__name__})")
            continue
        yield Row(number, record={str(k): plain(v) for k, v in record.items()})


def _jsonl_rows(path: Path, encoding: str | None) -> Iterator[Row]:
    for number, record, problem in _json_objects(path, encoding):
        yield Row(number, record=record,
                  problem=None if problem is None else f"line {number}: {problem}")


def _json_objects(source: Path | bytes, encoding: str | None,
                  ) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Each line of a JSONL file (or of its bytes) with its number: the object it holds,
    or what is wrong with it (never quoting it); a blank line has neither."""
    codec = encoding or "utf-8"
    with (_open_binary(source) if isinstance(source, Path)
          else io.BytesIO(source)) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8) and encoding is None:
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode(codec)
            except UnicodeDecodeError as error:
                yield number, None, (f"not {codec} text (byte 0x{raw[error.start]:02x} at "
                                     f"column {error.start + 1})")
                continue
            if not line.strip():
                yield number, None, None
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, None, f"not JSON ({error.msg})"
                continue
            if not isinstance(record, dict):
                yield number, None, "not a JSON object"
                continue
            yield number, record, None


@dataclass(frozen=True)
class JsonLine(Generic[M]):
    """One non-blank line of a JSONL file read as a model: the ``item``, or the ``problem``
    (what is wrong, never quoting the line, which may hold a customer's words)."""

    path: Path | None
    line: int
    item: M | None = None
    problem: str | None = None

    @property
    def where(self) -> str:
        """``FILE: line N``, as an error message names the line."""
        return f"{self.path}: line {self.line}" if self.path else f"line {self.line}"


def read_jsonl(source: Path | bytes, model: type[M], *,
               encoding: str | None = None) -> Iterator[JsonLine[M]]:
    """Every non-blank line of a JSONL file (a path, or its bytes) validated as ``model``,
    with its line number; a line that is not text, not JSON, not an object or not a valid
    ``model`` comes back as that line's problem, never as an exception that loses the rest.
    The one JSONL reader for exemplars, corrections, predictions and batch output; callers
    decide what a bad line means (skip it, or raise naming ``where``).

    >>> from complaint_motive.exemplars import LabelledComplaint
    >>> data = b'{"id": "a", "text": "t", "motive": "venting"}\\n\\n[1]\\n'
    >>> [(j.line, j.problem) for j in read_jsonl(data, LabelledComplaint)]
    [(1, None), (3, 'not a JSON object')]
    """
    path = source if isinstance(source, Path) else None
    for number, record, problem in _json_objects(source, encoding):
        if record is None:
            if problem is not None:
                yield JsonLine(path, number, problem=problem)
            continue
        try:
            item = model.model_validate(record)
        except ValidationError as error:
            yield JsonLine(path, number, problem=validation_summary(error))
            continue
        yield JsonLine(path, number, item=item)


def validation_summary(error: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """A validation error in a few words, without the input it rejected: the first field
    (under the caller's own column name, ``names``) and its message, and how many more."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "line"
    column = (names or {}).get(where, where)
    more = error.error_count() - 1
    return f"{column}: {first['msg']}" + (f" (+{more} more)" if more else "")


def detect_encoding(sample: bytes) -> str:
    """The encoding of a text file from its first bytes: a BOM's, else UTF-8 when they
    decode as UTF-8, else GB18030 (GBK's superset) when they decode as that."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for bom, name in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if sample.startswith(bom):
            return name
    for name in ("utf-8", *_FALLBACK_ENCODINGS):
        try:
            codecs.getincrementaldecoder(name)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return name
    return "utf-8"  # undecodable either way: each bad row is reported as that row's problem


def _csv_rows(path: Path, encoding: str | None) -> Iterator[Row]:
    with _open_binary(path) as handle:
        # Spreadsheet exports are small enough to sample generously; a multi-byte character
        # cut at the end of the sample is fine (the incremental decoder waits for it).
        codec = encoding or detect_encoding(handle.read(1 << 20))
        handle.seek(0)
        try:
            text = io.TextIOWrapper(handle, encoding=codec, errors="surrogateescape",
                                    newline="")
        except LookupError:
            raise InputError(f"unknown encoding {codec!r}") from None
        reader = csv.reader(text)
        try:
            header = next(reader)
        except StopIteration:
            return
        columns = [name.strip() for name in header]
        start = reader.line_num + 1
        for cells in reader:
            number, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a spreadsheet's empty row holds nothing to analyse or score
            if _UNDECODED.search("".join(cells)):
                yield Row(number, problem=f"line {number}: not {codec} text (pass --encoding)")
                continue
            if len(cells) > len(columns):
                yield Row(number, problem=f"line {number}: {len(cells)} cells for "
                          f"{len(columns)} columns")
                continue
            yield Row(number, record={name: plain(cell) for name, cell
                                      in zip(columns, cells, strict=False)})


def _parquet_rows(path: Path) -> Iterator[Row]:
    parquet = parquet_module()
    try:
        table = parquet.ParquetFile(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a Parquet file ({str(error)[:120]})") from None
    number = 0
    for batch in table.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            number += 1
            yield Row(number, record={str(k): plain(v) for k, v in record.items()})


def parquet_module() -> Any:
    """``pyarrow.parquet``, or a configuration error saying how to install it."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise ConfigurationError("Parquet files need pyarrow: pip install "
                                 "'complaint-motive[parquet]'") from None
    return parquet


def _open_binary(path: Path) -> io.BufferedReader:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a file") from None
