"""The ``complaint-motive`` command: a thin layer over the Python API.

Exit codes: 0 success; 1 an analysis failed (in a batch: at least one input ended in an
error line); 2 usage error; 3 configuration or index error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from .analyzer import MotiveAnalyzer
    from .settings import Settings

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


def _settings(**overrides: Any) -> Settings:
    from .errors import ConfigurationError
    from .settings import load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as error:
        raise _fail(error) from None


def _fail(error: Exception) -> typer.Exit:
    from .errors import ComplaintMotiveError, ConfigurationError

    message = error.message if isinstance(error, ComplaintMotiveError) else str(error)
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(3 if isinstance(error, ConfigurationError) else 1)


def _check_format(value: str) -> Format:
    if value not in ("text", "json"):
        raise typer.BadParameter("--format must be text or json")
    return value  # type: ignore[return-value]


@app.command()
def index(rebuild: Annotated[bool, typer.Option(help="re-embed everything")] = False,
          format: FormatOption = "text") -> None:
    """Build or update the knowledge index (a no-op when it is current)."""
    from .errors import ComplaintMotiveError, IndexStoreError
    from .index import KnowledgeIndex, move_aside
    from .offline import MotiveModel

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
               help="favour guidance about this motive (repeatable)")] = None) -> None:
    """Show the guidance a complaint retrieves, best first."""
    from .errors import ComplaintMotiveError
    from .index import KnowledgeIndex
    from .retrieval import retrieve_guidance

    fmt = _check_format(format)
    try:
        chunks = retrieve_guidance(KnowledgeIndex.from_settings(_settings()), text, k,
                                   motives=motive or ())
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
        help="JSONL of {id, text} (or {id, turns}), with an optional language")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="JSONL results, in "
                                                "input order")] = None,
    format: FormatOption = "text",
    backend: BackendOption = None, fallback: FallbackOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 8,
    batch_api: BatchApiOption = False, batch_state: BatchStateOption = None,
    poll_interval: PollOption = 30.0,
    quiet: Quiet = False,
) -> None:
    """Analyse one complaint, or a JSONL file of them (--input/--output)."""
    from .errors import ComplaintMotiveError

    fmt = _check_format(format)
    if (text is None) == (input is None):
        raise typer.BadParameter("give either TEXT or --input FILE")
    if batch_api and input is None:
        raise typer.BadParameter("--batch-api needs --input FILE")
    try:
        analyzer = _analyzer(backend=backend, fallback=fallback, quiet=quiet)
        if input is not None:
            state = (batch_state or Path(f"{output or input}.batch-state.json")) \
                if batch_api else None
            failed = asyncio.run(_analyze_file(analyzer, input, output, concurrency, quiet,
                                               batch_state=state, poll_interval=poll_interval))
            raise typer.Exit(1 if failed else 0)
        complaint = sys.stdin.read() if text == "-" else text
        result = analyzer.analyze(complaint or "")
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    if fmt == "json":
        typer.echo(result.model_dump_json(indent=2))
    else:
        from .render import render_card

        render_card(result)


def _analyzer(*, quiet: bool = False, **overrides: Any) -> MotiveAnalyzer:
    from .analyzer import MotiveAnalyzer

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


def _read_batch(path: Path) -> list[dict[str, Any]]:
    """Every line of the file becomes one input; an unreadable line becomes that input's
    error rather than disappearing."""
    from .errors import InputError

    items: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                items.append({"id": f"line-{number}", "text": InputError(
                    f"line {number}: not JSON ({error.msg})")})
                continue
            if not isinstance(record, dict):
                items.append({"id": f"line-{number}",
                              "text": InputError(f"line {number}: not an object")})
                continue
            item_id = str(record.get("id", f"line-{number}"))
            if record.get("text", record.get("turns")) is None:
                record["text"] = InputError(f"line {number}: no 'text' or 'turns'")
            items.append({**record, "id": item_id})  # the analyzer reads text, turns, language
    return items


async def _analyze_file(analyzer: MotiveAnalyzer, source: Path, target: Path | None,
                        concurrency: int, quiet: bool, *, batch_state: Path | None = None,
                        poll_interval: float = 30.0) -> int:
    from .render import progress

    items = _read_batch(source)
    run = analyzer.aiter_outcomes
    if batch_state is not None:
        from .batch_api import BatchRun

        run = BatchRun(analyzer, batch_state, poll_interval=poll_interval,
                       progress_bar=not quiet).aiter_outcomes
    out = target.open("w", encoding="utf-8") if target else sys.stdout
    failed = 0
    try:
        with progress(len(items), "analysing", disable=quiet or target is None) as advance:
            outcomes = run(items, concurrency=concurrency)
            # Outcomes come in input order, each as soon as it and everything before it is
            # done: every line is written at once, so an interrupted run keeps its work.
            async for outcome in outcomes:
                line = ({"id": outcome.id, "result": outcome.result.model_dump(mode="json")}
                        if outcome.result else {"id": outcome.id, "error": outcome.error})
                failed += outcome.result is None
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
                out.flush()
                advance()
    finally:
        if target:
            out.close()
    if not quiet:
        typer.echo(f"{len(items)} inputs, {len(items) - failed} results, {failed} errors",
                   err=True)
    return failed


@app.command()
def config(format: FormatOption = "text") -> None:
    """Print the effective settings (secrets masked)."""

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
) -> None:
    """Record an agent's correction (analyses TEXT, then appends the correction)."""
    from .corrections import record_correction
    from .errors import ComplaintMotiveError

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
) -> None:
    """Turn reviewed corrections into exemplars and update the index incrementally."""
    from .corrections import import_corrections
    from .errors import ComplaintMotiveError
    from .index import KnowledgeIndex

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
    dataset: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                            help="JSONL of {id, text, motive, stage, …}")],
    report: Annotated[Path, typer.Option(help="folder for the report")],
    backend: BackendOption = None, fallback: FallbackOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256)] = 8,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run")] = False,
    compare: Annotated[Path | None, typer.Option(help="another report folder to compare "
                                                 "with")] = None,
    batch_api: BatchApiOption = False, poll_interval: PollOption = 30.0,
    quiet: Quiet = False,
) -> None:
    """Evaluate an analyzer on a labelled set and write a report."""
    from .errors import ComplaintMotiveError
    from .evaluation import compare_reports, evaluate

    try:
        analyzer = _analyzer(backend=backend, fallback=fallback, quiet=quiet)
        source = None
        if batch_api:  # the batch id lives in the report folder, so --resume finds it
            from .batch_api import BatchRun

            source = BatchRun(analyzer, report / "batch-state.json",
                              poll_interval=poll_interval,
                              progress_bar=not quiet).aiter_outcomes
        result = evaluate(dataset, analyzer, report_dir=report, concurrency=concurrency,
                          limit=limit, resume=resume, progress_bar=not quiet, source=source)
    except ComplaintMotiveError as error:
        raise _fail(error) from error
    typer.echo(result.summary())
    if compare is not None:
        try:
            typer.echo(compare_reports(compare, report))
        except ComplaintMotiveError as error:
            raise _fail(error) from error


@app.command()
def compare(before: Path, after: Path) -> None:
    """Compare two evaluation reports: metric deltas and changed predictions."""
    from .errors import ComplaintMotiveError
    from .evaluation import compare_reports

    try:
        typer.echo(compare_reports(before, after))
    except ComplaintMotiveError as error:
        raise _fail(error) from error


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8080,
          token: Annotated[str | None, typer.Option(envvar="COMPLAINT_MOTIVE_TOKEN",
                                                    help="require this bearer token")] = None
          ) -> None:
    """Serve the HTTP API (needs the 'server' extra)."""
    try:
        import uvicorn

        from .server import create_app
    except ImportError as error:
        raise _fail(ValueError("the HTTP service needs: pip install "
                               "'complaint-motive[server]'")) from error
    analyzer = _analyzer()  # says what a first start must build before it can listen
    uvicorn.run(create_app(analyzer.settings, token=token, analyzer=analyzer), host=host,
                port=port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
