"""The ``complaint-motive`` command: a thin layer over the Python API.

Exit codes: 0 success; 1 an analysis failed (in a batch: at least one input ended in an
error line); 2 usage error; 3 configuration or index error.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from ..analyzer import MotiveAnalyzer, Outcome
    from ..settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Explain a customer complaint's motive and stage, and draft a reply.")
exemplars_app = typer.Typer(no_args_is_help=True, help="Manage labelled exemplars.")
app.add_typer(exemplars_app, name="exemplars")

Format = Literal["text", "json"]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="text or json")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress or notes on stderr")]
BackendOption = Annotated[str | None, typer.Option(help="auto, llm or offline")]
FallbackOption = Annotated[str | None, typer.Option(help="none or offline: answer offline, "
                                                    "marked degraded, when the LLM fails")]
BatchApiOption = Annotated[bool, typer.Option(
    "--batch-api", help="send the LLM calls through the OpenAI Batch API (half price, "
    "answers within 24 h); failures are asked again synchronously")]
BatchStateOption = Annotated[Path | None, typer.Option(
    help="where the batch id is kept so an interrupted run resumes the same batch")]
PollOption = Annotated[float, typer.Option(min=0, help="seconds between batch status polls")]
LogLevel = Annotated[str | None, typer.Option(
    "--log-level", help="the library's structured logs on stderr: debug, info, warning, error")]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True,
                                      help="logs on stderr: -v info, -vv debug")]
EncodingOption = Annotated[str | None, typer.Option(
    help="a text file's encoding (default: BOM, else UTF-8, else GB18030 for CSV)")]
InputFormat = Annotated[str | None, typer.Option(
    "--input-format", help="jsonl, csv or parquet (default: from the suffix)")]
TextField = Annotated[str | None, typer.Option(help="the column holding the text")]
IdField = Annotated[str | None, typer.Option(help="the column holding the id")]

_STANDARD_RECORD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class _StructuredFormatter(logging.Formatter):
    """``time level logger: message key=value …``: a record's structured fields shown."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
                          for k, v in vars(record).items() if k not in _STANDARD_RECORD)
        return super().format(record) + (f" {fields}" if fields else "")


def _logging(level: str | None, verbose: int) -> None:
    """Turn on the library's logs on stderr (they carry labels and numbers, never text)."""
    if level is None and not verbose:
        return
    name = (level or ("DEBUG" if verbose > 1 else "INFO")).upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter("--log-level must be debug, info, warning or error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StructuredFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("complaint_motive")
    package.handlers = [handler]
    package.setLevel(name)
    package.propagate = False


def _usage(message: str) -> typer.Exit:
    """A usage error (exit 2), found before any work was done."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _settings(**overrides: Any) -> Settings:
    import tomllib

    from ..errors import ConfigurationError
    from ..settings import load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as error:
        raise _fail(error) from None
    except tomllib.TOMLDecodeError as error:  # complaint-motive.toml is not TOML
        raise _fail(ConfigurationError(f"the settings file is not valid TOML ({error})")) \
            from None


def _fail(error: Exception) -> typer.Exit:
    from ..errors import ComplaintMotiveError, ConfigurationError

    message = error.message if isinstance(error, ComplaintMotiveError) else str(error)
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(3 if isinstance(error, ConfigurationError) else 1)


def _check_format(value: str) -> Format:
    if value not in ("text", "json"):
        raise typer.BadParameter("--format must be text or json")
    return value  # type: ignore[return-value]


@app.command()
def index(rebuild: Annotated[bool, typer.Option(help="re-embed everything")] = False,
          format: FormatOption = "text", log_level: LogLevel = None,
          verbose: Verbose = 0) -> None:
    """Build or update the knowledge index (a no-op when it is current)."""
    _logging(log_level, verbose)
    from ..analysis.classifier import MotiveModel
    from ..errors import ComplaintMotiveError, IndexStoreError
    from ..knowledge.index import KnowledgeIndex, move_aside

    fmt = _check_format(format)
    settings = _settings()
    try:
        try:
            knowledge = KnowledgeIndex.from_settings(settings)
            reports = knowledge.ensure(rebuild=rebuild)
        except IndexStoreError as error:
            if not rebuild or settings.chroma_host or not settings.index_dir.exists():
                raise
            aside = move_aside(settings.index_dir)
            typer.echo(f"note: the index could not be opened ({error.message}); "
                       f"moved aside to {aside}", err=True)
            knowledge = KnowledgeIndex.from_settings(settings)
            reports = knowledge.ensure()
        model = MotiveModel.load_or_train(settings.index_dir / "models", knowledge.exemplars,
                                          settings.offline_sentence_encoder)
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    rows = [{"collection": r.collection, "records": r.records, "built": r.built,
             "embedded": r.embedded, "reused": r.reused, "seconds": round(r.seconds, 3)}
            for r in reports]
    if fmt == "json":
        typer.echo(json.dumps({"collections": rows, "model": model.version}, indent=2))
        return
    for row in rows:
        state = (f"built: {row['embedded']} embedded, {row['reused']} reused"
                 if row["built"] else "current")
        typer.echo(f"{row['collection']}: {row['records']} records ({state}, "
                   f"{row['seconds']} s)")
    where = settings.chroma_host or settings.index_dir
    typer.echo(f"offline model: {model.version}  index: {where}")


@app.command()
def search(text: str, k: Annotated[int, typer.Option("-k", min=1, max=50)] = 4,
           format: FormatOption = "text",
           motive: Annotated[list[str] | None, typer.Option(
               help="favour guidance about this motive (repeatable)")] = None,
           log_level: LogLevel = None, verbose: Verbose = 0) -> None:
    """Show the guidance a complaint retrieves (what the model is given), best first."""
    _logging(log_level, verbose)
    from ..analysis.pipeline import Pipeline
    from ..errors import ComplaintMotiveError
    from ..knowledge.index import KnowledgeIndex
    from .retriever import retrieve_guidance

    fmt = _check_format(format)
    try:
        settings = _settings()
        # The pipeline's own preparation: what the model is given for this text.
        pipeline = Pipeline(settings, KnowledgeIndex.from_settings(settings))
        chunks = retrieve_guidance(pipeline, text, k, motives=motive or ())
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    if fmt == "json":
        typer.echo(json.dumps([c.model_dump() for c in chunks], ensure_ascii=False, indent=2))
        return
    for rank, chunk in enumerate(chunks, 1):
        about = ", ".join(chunk.motives + chunk.stages) or "-"
        typer.echo(f"{rank}. [{chunk.chunk_id}] score {chunk.score:.3f}  about: {about}\n"
                   f"   {chunk.title} › {chunk.section}\n   {chunk.text[:160]}\n")


@app.command()
def analyze(
    text: Annotated[str | None, typer.Argument(help="the complaint, or a '[1] 客户: …' "
                                               "transcript; '-' reads standard input")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", "-i", exists=True, dir_okay=False,
        help="JSONL, CSV or Parquet of {id, text} (or {id, turns}), with an optional "
             "language")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="results in input order, one per input row: JSONL, or CSV / "
        "Parquet with the result's stable keys as columns (by suffix)")] = None,
    format: FormatOption = "text",
    backend: BackendOption = None, fallback: FallbackOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 8,
    batch_api: BatchApiOption = False, batch_state: BatchStateOption = None,
    poll_interval: PollOption = 30.0,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="analyse --input on a Ray cluster, one analyzer per "
        "worker: 'local' (this machine's cores), 'auto' (the cluster this machine belongs "
        "to, or RAY_ADDRESS) or ray://HEAD:10001 (needs the 'ray' extra)")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        min=1, help="--ray: worker actors (default: the cluster's CPUs)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted --output")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --output")] = False,
    input_format: InputFormat = None, encoding: EncodingOption = None,
    text_field: TextField = None, id_field: IdField = None,
    quiet: Quiet = False, log_level: LogLevel = None, verbose: Verbose = 0,
) -> None:
    """Analyse one complaint, or a file of them (--input/--output)."""
    from ..errors import ComplaintMotiveError, InputError

    _logging(log_level, verbose)
    fmt = _check_format(format)
    if (text is None) == (input is None):
        raise typer.BadParameter("give either TEXT or --input FILE")
    if batch_api and input is None:
        raise typer.BadParameter("--batch-api needs --input FILE")
    if ray is not None and (input is None or batch_api):
        raise typer.BadParameter("--ray needs --input FILE, and not --batch-api")
    if input is not None:
        try:
            sink = _BatchSink.plan(input, output, resume=resume, overwrite=overwrite)
            items = list(_batch_items(input, input_format=input_format, encoding=encoding,
                                      text_field=text_field, id_field=id_field))
            if [item["id"] for item in items[:len(sink.kept)]] != sink.kept:
                raise InputError(f"{output} holds results for other inputs than the first "
                                 f"rows of {input}: use --overwrite, or another --output")
        except InputError as error:
            raise _usage(error.message) from None
        try:
            analyzer = _analyzer(backend=backend, fallback=fallback, quiet=quiet)
            state = (batch_state or Path(f"{output or input}.batch-state.json")) \
                if batch_api else None
            failed = asyncio.run(_analyze_file(analyzer, items, sink, concurrency, quiet,
                                               batch_state=state, poll_interval=poll_interval,
                                               ray_address=ray, ray_workers=ray_workers))
        except ComplaintMotiveError as error:
            raise _fail(error) from error
        raise typer.Exit(1 if failed else 0)
    try:
        analyzer = _analyzer(backend=backend, fallback=fallback, quiet=quiet)
        complaint = _stdin_text() if text == "-" else text
        result = analyzer.analyze(complaint or "")
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    if fmt == "json":
        typer.echo(result.model_dump_json(indent=2))
    else:
        from .render import render_card

        render_card(result)


def _stdin_text() -> str:
    from ..errors import InputError

    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"standard input is not UTF-8 text (byte 0x{data[error.start]:02x} at "
                         f"offset {error.start})") from None


def _analyzer(*, quiet: bool = False, **overrides: Any) -> MotiveAnalyzer:
    from ..analyzer import MotiveAnalyzer

    analyzer = MotiveAnalyzer(_settings(**overrides))
    if not quiet and analyzer.backend == "offline" and analyzer.settings.backend == "auto":
        typer.echo("note: no LLM endpoint configured (OPENAI_API_KEY / OPENAI_BASE_URL); "
                   "using the offline analyzer", err=True)
    if not quiet:
        _say_first_run_work(analyzer)
    return analyzer


def _say_first_run_work(analyzer: MotiveAnalyzer) -> None:
    work = analyzer.first_run_work()
    if work:
        typer.echo(f"note: first run in {analyzer.settings.index_dir}: {' and '.join(work)} "
                   "(a few seconds, once)…", err=True)


#: Columns of a CSV or Parquet batch output: the result's stable keys, flattened.
RESULT_COLUMNS = ("line", "id", "primary_motive.id", "primary_motive.confidence",
                  "primary_motive.level", "primary_motive.action", "secondary_motives",
                  "stage.id", "stage.confidence", "risk.level", "risk.flags", "reply.text",
                  "citations", "meta.backend", "meta.degraded", "meta.warnings", "error.kind",
                  "error.message", "extra")


def _flat(line: dict[str, Any]) -> dict[str, Any]:
    """A batch output line as one table row (lists stay lists; CSV joins them with ';')."""
    result, error = line.get("result") or {}, line.get("error") or {}

    def part(name: str) -> dict[str, Any]:
        return result.get(name) or {}  # e.g. no stage for what is not a complaint

    motive, stage, risk = part("primary_motive"), part("stage"), part("risk")
    return {
        "line": line.get("line"), "id": line.get("id"),
        "primary_motive.id": motive.get("id"),
        "primary_motive.confidence": motive.get("confidence"),
        "primary_motive.level": motive.get("level"),
        "primary_motive.action": motive.get("action"),
        "secondary_motives": [m["id"] for m in result.get("secondary_motives") or []],
        "stage.id": stage.get("id"), "stage.confidence": stage.get("confidence"),
        "risk.level": risk.get("level"), "risk.flags": risk.get("flags") or [],
        "reply.text": part("reply").get("text"),
        "citations": [c["chunk_id"] for c in result.get("citations") or []],
        "meta.backend": part("meta").get("backend"),
        "meta.degraded": part("meta").get("degraded"),
        "meta.warnings": part("meta").get("warnings") or [],
        "error.kind": error.get("kind"), "error.message": error.get("message"),
        # the input row's other columns, as JSON: one stable column whatever the input had
        "extra": json.dumps(line["extra"], ensure_ascii=False, default=str)
        if line.get("extra") else None}


class _BatchSink:
    """Where batch results go, one line per input row, written as they come so an
    interrupted run keeps its work. JSONL and CSV are appended to in place; Parquet (which
    cannot be appended to) collects lines in a ``.partial.jsonl`` file beside it and is
    written from it at the end."""

    def __init__(self, target: Path | None, kind: str, kept: list[str | None]) -> None:
        self.target, self.kind, self.kept = target, kind, kept
        self._handle: Any = None
        self._csv: Any = None

    @property
    def partial(self) -> Path:
        assert self.target is not None
        return self.target.with_name(self.target.name + ".partial.jsonl")

    @classmethod
    def plan(cls, source: Path, target: Path | None, *, resume: bool,
             overwrite: bool) -> _BatchSink:
        """Check ``--output`` before any work; ``InputError`` says why it cannot be used."""
        from ..errors import InputError
        from ..readers import table_format

        if target is None:
            if resume:
                raise InputError("--resume continues an --output file: give --output")
            return cls(None, "jsonl", [])
        if resume and overwrite:
            raise InputError("choose --resume or --overwrite, not both")
        if not target.parent.is_dir():
            raise InputError(f"the folder {target.parent} does not exist: create it first")
        if target.is_dir():
            raise InputError(f"--output {target} is a folder: name a file")
        if target.exists() and target.resolve() == source.resolve():
            raise InputError("--output is the --input file: it would be overwritten")
        kind = table_format(target)
        sink = cls(target, kind, [])
        existing = [p for p in (target, sink.partial if kind == "parquet" else None)
                    if p is not None and p.exists() and p.stat().st_size]
        if existing and not (resume or overwrite):
            raise InputError(f"{existing[0]} exists: --resume to continue it, --overwrite to "
                             "replace it")
        if resume and existing:
            sink.kept = sink._kept_ids()
        return sink

    def _kept_ids(self) -> list[str | None]:
        """The ids of the complete lines an interrupted run wrote (a partial last line is
        dropped: that input runs again); a damaged line elsewhere cannot be resumed."""
        from ..errors import InputError
        from ..readers import read_rows

        assert self.target is not None
        if self.kind == "parquet" and not self.partial.exists():
            rows = [r.record or {} for r in read_rows(self.target)]
            self._rewrite_partial(rows)
            return [r.get("id") for r in rows]
        path = self.partial if self.kind == "parquet" else self.target
        data = path.read_bytes()
        complete = data if data.endswith(b"\n") else data[:data.rfind(b"\n") + 1]
        if self.kind == "csv":
            text = complete.decode("utf-8-sig")
            rows = list(csv.DictReader(text.splitlines(keepends=True)))
            if complete != data:
                path.write_bytes(complete)
            return [r.get("id") for r in rows]
        from pydantic import BaseModel

        from ..readers import read_jsonl

        class ResultLine(BaseModel):
            id: Any  # required: every output line names its input's id (None for a blank)

        ids: list[str | None] = []
        for read in read_jsonl(complete, ResultLine):
            if read.item is None:
                raise InputError(f"{path}: line {read.line} is not a result line; fix it or "
                                 "use --overwrite")
            ids.append(read.item.id)
        if complete != data:
            path.write_bytes(complete)  # so the next line starts on its own
        return ids

    def _rewrite_partial(self, rows: list[dict[str, Any]]) -> None:
        with self.partial.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def open(self) -> None:
        mode = "a" if self.kept else "w"
        if self.target is None:
            self._handle = sys.stdout
        elif self.kind == "parquet":
            self._handle = self.partial.open(mode, encoding="utf-8")
        else:
            self._handle = self.target.open(mode, encoding="utf-8", newline="")
            if self.kind == "csv":
                self._csv = csv.DictWriter(self._handle, fieldnames=RESULT_COLUMNS)
                if not self.kept:
                    self._csv.writeheader()

    def write(self, line: dict[str, Any]) -> None:
        if self.kind == "jsonl":
            self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        elif self.kind == "csv":
            self._csv.writerow({k: ";".join(v) if isinstance(v, list) else v
                                for k, v in _flat(line).items()})
        else:
            self._handle.write(json.dumps(_flat(line), ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self, finished: bool) -> None:
        if self._handle is not None and self.target is not None:
            self._handle.close()
        if finished and self.kind == "parquet" and self.target is not None:
            self._write_parquet()

    def _write_parquet(self) -> None:
        import pyarrow as pa

        from ..readers import parquet_module

        assert self.target is not None
        text, number, lists = pa.string(), pa.float64(), pa.list_(pa.string())
        types = {"line": pa.int64(), "primary_motive.confidence": number,
                 "stage.confidence": number, "meta.degraded": pa.bool_(),
                 "secondary_motives": lists, "risk.flags": lists, "citations": lists,
                 "meta.warnings": lists}
        schema = pa.schema([(name, types.get(name, text)) for name in RESULT_COLUMNS])
        writer = parquet_module().ParquetWriter(self.target, schema)
        try:
            with self.partial.open(encoding="utf-8") as handle:
                batch: list[dict[str, Any]] = []
                for line in handle:
                    batch.append(json.loads(line))
                    if len(batch) == 1024:
                        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                        batch = []
                if batch:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        finally:
            writer.close()
        self.partial.unlink()


#: The columns of an input row the analyzer reads besides its id and text (or turns).
ANALYSED_COLUMNS = ("language", "channel")


def _batch_items(source: Path, *, input_format: str | None, encoding: str | None,
                 text_field: str | None, id_field: str | None) -> Iterator[dict[str, Any]]:
    """Every row of the file becomes one input, blank and unreadable rows included (as that
    input's error), so every row yields one output line; a repeated id is reported."""
    from ..readers import read_rows

    first_seen: dict[str, int] = {}
    for row in read_rows(source, format=input_format, encoding=encoding):
        fallback_id = f"line-{row.line}"
        if row.record is None:
            problem = row.problem or f"line {row.line}: blank line, nothing to analyse"
            yield _rejected(fallback_id, row.line, problem)
            continue
        record = dict(row.record)
        if text_field and text_field in record:
            record["text"] = record.pop(text_field)
        if id_field and id_field in record:
            record["id"] = record.pop(id_field)
        item_id = fallback_id if record.get("id") is None else str(record["id"])
        repeated = first_seen.get(item_id)
        first_seen.setdefault(item_id, row.line)
        if repeated is not None:
            yield _rejected(item_id, row.line, f"line {row.line}: repeated id {item_id!r} "
                            f"(first on line {repeated})")
            continue
        if record.get("text", record.get("turns")) is None:
            yield _rejected(item_id, row.line, f"line {row.line}: no 'text' or 'turns'")
            continue
        # The analyzer reads text (or turns), language and channel; the row's other columns
        # (date, product, queue …) go back beside the result under "extra", untouched.
        item: dict[str, Any] = {"id": item_id, "line": row.line}
        if record.get("text") is not None:
            item["text"] = record["text"]
        else:
            item["turns"] = record["turns"]
        for name in ANALYSED_COLUMNS:
            if record.get(name):
                item[name] = record[name]
        extra = {k: v for k, v in record.items()
                 if k not in {"id", "text", "turns", *ANALYSED_COLUMNS}}
        if extra:
            item["extra"] = extra
        yield item


def _rejected(item_id: str, line: int, problem: str) -> dict[str, Any]:
    """A row that cannot be analysed: it keeps its place, and its error is its output."""
    from ..analysis.batch_runner import Rejected
    from ..errors import InputError

    return {"id": item_id, "line": line, "rejected": Rejected(InputError(problem), item_id)}


async def _analyze_file(analyzer: MotiveAnalyzer, items: list[dict[str, Any]],
                        sink: _BatchSink, concurrency: int, quiet: bool, *,
                        batch_state: Path | None = None, poll_interval: float = 30.0,
                        ray_address: str | None = None, ray_workers: int | None = None) -> int:
    from ..progress import progress

    kept = sink.kept
    todo = items[len(kept):]
    run = analyzer.aiter_outcomes
    if batch_state is not None:
        from ..runners.batch_api import BatchRun

        run = BatchRun(analyzer, batch_state, poll_interval=poll_interval,
                       progress_bar=not quiet).aiter_outcomes
    if ray_address is not None:
        from ..runners.ray_runner import RayRun

        run = RayRun(analyzer, ray_address, workers=ray_workers).aiter_outcomes
    failed = 0
    finished = False
    sink.open()
    try:
        with progress(len(todo), "analysing", disable=quiet or sink.target is None) as advance:
            outcomes = run([item.get("rejected") or _analysed(item) for item in todo],
                           concurrency=concurrency)
            # Outcomes come in input order, each as soon as it and everything before it is
            # done: every line is written at once, so an interrupted run keeps its work.
            async for outcome in outcomes:
                sink.write(_output_line(outcome, todo[outcome.index]))
                failed += outcome.result is None
                advance()
        finished = True
    finally:
        sink.close(finished)
    if not quiet:
        typer.echo(f"{len(items)} inputs ({len(kept)} kept from the earlier run), "
                   f"{len(todo) - failed} results, {failed} errors", err=True)
    return failed


def _analysed(item: dict[str, Any]) -> dict[str, Any]:
    """What the analyzer is handed for a row: not its line number or its other columns."""
    return {k: v for k, v in item.items() if k not in ("line", "extra")}


def _output_line(outcome: Outcome, item: dict[str, Any]) -> dict[str, Any]:
    line = {"id": outcome.id, "line": item["line"],
            **({"extra": item["extra"]} if item.get("extra") else {})}
    if outcome.result is not None:
        return {**line, "result": outcome.result.model_dump(mode="json")}
    return {**line, "error": outcome.error}


@app.command()
def config(format: FormatOption = "text", log_level: LogLevel = None,
           verbose: Verbose = 0) -> None:
    """Print the effective settings (secrets masked)."""
    _logging(log_level, verbose)

    settings = _settings()
    data = settings.masked()
    data["resolved_backend"] = settings.resolved_backend()
    if _check_format(format) == "json":
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


@app.command()
def correct(
    text: Annotated[str, typer.Argument(help="the complaint that was misjudged")],
    motive: Annotated[str | None, typer.Option(help="the right motive id")] = None,
    stage: Annotated[str | None, typer.Option(help="the right stage id")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    reviewed: Annotated[bool, typer.Option(help="mark it reviewed, ready for import")] = False,
    log_level: LogLevel = None, verbose: Verbose = 0,
) -> None:
    """Record an agent's correction (analyses TEXT, then appends the correction)."""
    _logging(log_level, verbose)
    from ..errors import ComplaintMotiveError
    from ..knowledge.corrections import record_correction

    try:
        analyzer = _analyzer()
        result = analyzer.analyze(text)
        path = record_correction(result, text=text, motive=motive, stage=stage, note=note,
                                 path=analyzer.settings.corrections_file, reviewed=reviewed)
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    typer.echo(f"recorded in {path} (was {result.primary_motive.id}/"
                f"{result.stage.id if result.stage else '-'})")


@exemplars_app.command("import-corrections")
def import_corrections_command(
    include_unreviewed: Annotated[bool, typer.Option(help="import corrections nobody has "
                                                     "reviewed yet")] = False,
    log_level: LogLevel = None, verbose: Verbose = 0,
) -> None:
    """Turn reviewed corrections into exemplars and update the index incrementally."""
    _logging(log_level, verbose)
    from ..errors import ComplaintMotiveError
    from ..knowledge.corrections import import_corrections
    from ..knowledge.index import KnowledgeIndex

    settings = _settings()
    try:
        added = import_corrections(settings.corrections_file, settings.local_exemplars,
                                   include_unreviewed=include_unreviewed)
        reports = KnowledgeIndex.from_settings(settings).ensure()
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    exemplar_report = next(r for r in reports if r.kind == "exemplars")
    typer.echo(f"imported {added} corrections into {settings.local_exemplars}; exemplars: "
               f"{exemplar_report.records} ({exemplar_report.embedded} embedded)")


@app.command("eval")
def eval_command(
    dataset: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, help="JSONL, CSV or Parquet of {id, text, motive, "
        "stage, …}; other columns are kept in the predictions")],
    report: Annotated[Path, typer.Option(help="folder for the report")],
    backend: BackendOption = None, fallback: FallbackOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 8,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run")] = False,
    compare: Annotated[Path | None, typer.Option(help="another report folder to compare "
                                                 "with")] = None,
    by: Annotated[list[str] | None, typer.Option(
        help="slice every headline metric by this column (repeatable; 'lang' is always "
             "there)")] = None,
    second_annotator: Annotated[str | None, typer.Option(
        help="the column with a second annotator's motive: Cohen's kappa")] = None,
    text_field: TextField = None, id_field: IdField = None,
    motive_field: Annotated[str | None, typer.Option(help="the column with the gold "
                                                     "motive")] = None,
    stage_field: Annotated[str | None, typer.Option(help="the column with the gold "
                                                    "stage")] = None,
    input_format: InputFormat = None, encoding: EncodingOption = None,
    batch_api: BatchApiOption = False, poll_interval: PollOption = 30.0,
    quiet: Quiet = False, log_level: LogLevel = None, verbose: Verbose = 0,
) -> None:
    """Evaluate an analyzer on a labelled set and write a report (report.html, report.md,
    metrics.json, predictions.jsonl, plots)."""
    from ..errors import ComplaintMotiveError, InputError
    from ..evaluation.compare import comparison_markdown
    from ..evaluation.models import FieldMap
    from ..evaluation.run import arun_evaluation, plan_evaluation

    _logging(log_level, verbose)
    mapped = {"text": text_field, "id": id_field, "motive": motive_field,
              "stage": stage_field}
    try:  # every argument is checked against the set before anything is analysed
        plan = plan_evaluation(dataset, report_dir=report, limit=limit, resume=resume,
                               fields=FieldMap(**{k: v for k, v in mapped.items() if v}),
                               by=by or (), second_annotator=second_annotator,
                               compare=compare, encoding=encoding, format=input_format)
    except InputError as error:
        raise _usage(error.message) from None
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    try:
        analyzer = _analyzer(backend=backend, fallback=fallback, quiet=quiet)
        source = None
        if batch_api:  # the batch id lives in the report folder, so --resume finds it
            from ..runners.batch_api import BatchRun

            source = BatchRun(analyzer, report / "batch-state.json",
                              poll_interval=poll_interval,
                              progress_bar=not quiet).aiter_outcomes
        result = asyncio.run(arun_evaluation(plan, analyzer, concurrency=concurrency,
                                             progress_bar=not quiet, source=source))
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    typer.echo(result.summary())
    if result.comparison is not None:
        typer.echo(comparison_markdown(result.comparison))
    if not quiet:
        typer.echo(f"report: {report / 'report.html'}", err=True)
    if not result.scored:
        reason = (f"every row was skipped (first: line {result.skipped_lines[0].line}: "
                  f"{result.skipped_lines[0].message})" if result.skipped_lines and not result.n
                  else "every analysis failed" if result.n else "the set has no rows")
        typer.echo(f"error: nothing was scored: {reason}", err=True)
        raise typer.Exit(1)


@app.command()
def compare(before: Path, after: Path, log_level: LogLevel = None,
            verbose: Verbose = 0) -> None:
    """Compare two evaluation reports: metric deltas (paired bootstrap intervals for
    accuracy and macro-F1) and changed predictions."""
    _logging(log_level, verbose)
    from ..errors import ComplaintMotiveError
    from ..evaluation.compare import compare_reports

    try:
        typer.echo(compare_reports(before, after))
    except ComplaintMotiveError as error:
        raise _fail(error) from error


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8080,
          token: Annotated[str | None, typer.Option(envvar="COMPLAINT_MOTIVE_TOKEN",
                                                    help="require this bearer token")] = None,
          log_level: LogLevel = None, verbose: Verbose = 0) -> None:
    """Serve the HTTP API (needs the 'server' extra)."""
    _logging(log_level, verbose)
    try:
        import uvicorn

        from .server import create_app, server_config
    except ImportError as error:
        raise _fail(ValueError("the HTTP service needs: pip install "
                               "'complaint-motive[server]'")) from error
    analyzer = _analyzer()  # says what a first start must build before it can listen
    app = create_app(analyzer.settings, token=token, analyzer=analyzer)
    uvicorn.Server(server_config(app, host=host, port=port)).run()


@app.command()
def mcp(transport: Annotated[str, typer.Option(help="stdio (a desktop client starts the "
                                               "server) or http (streamable HTTP at /mcp)")]
        = "stdio",
        host: str = "127.0.0.1", port: int = 8000,
        token: Annotated[str | None, typer.Option(
            envvar="COMPLAINT_MOTIVE_TOKEN", help="http: require this bearer token")] = None,
        log_level: LogLevel = None, verbose: Verbose = 0) -> None:
    """Serve the analyzer to copilots and agents over MCP (needs the 'mcp' extra)."""
    _logging(log_level, verbose)
    if transport not in ("stdio", "http"):
        raise _usage("--transport must be stdio or http")
    try:
        from .mcp_server import serve as serve_mcp
    except ImportError as error:
        raise _fail(ValueError("the MCP server needs: pip install "
                               "'complaint-motive[mcp]'")) from error
    from ..errors import ComplaintMotiveError

    try:  # stdout is the protocol's on stdio: every note goes to stderr
        analyzer = _analyzer()
        analyzer.warm_up()
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    serve_mcp(analyzer, transport=transport,  # type: ignore[arg-type]
              host=host, port=port, token=token)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
