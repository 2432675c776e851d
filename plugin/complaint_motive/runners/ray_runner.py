"""Big runs on Ray: the analyzer over a Ray Dataset, one analyzer per worker actor.

Each actor builds its ``MotiveAnalyzer`` once and opens the index once (the embedded store
in ``index_dir`` on its node, or the shared Chroma server when ``chroma_host`` is set), then
analyses batch after batch with ``analyze_many``. Every input row gives exactly one output
row, in input order; a row that cannot be analysed is its error, never a lost row or a
failed job.

>>> connect("local")                                            # doctest: +SKIP
>>> rows = ray.data.read_parquet("s3://bucket/tickets/")        # doctest: +SKIP
>>> analyze_dataset(rows, Settings(chroma_host="chroma.internal")).write_parquet("out/")
...                                                             # doctest: +SKIP

Nothing is downloaded at run time: a local cluster starts without its dashboard and with
usage statistics off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigurationError, InputError

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from ..analysis.batch_runner import Rejected
    from ..analyzer import MotiveAnalyzer, Outcome
    from ..settings import Settings
    from ..vocab import Fallback

#: What each output row holds: the input's id, then the result or the error as JSON text.
OUTPUT_COLUMNS = ("id", "result", "error")
#: The input columns an analyzer reads; any other column is left alone.
INPUT_COLUMNS = ("id", "text", "turns", "language", "channel")


def _ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report sent home
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigurationError("Ray runs need: pip install 'complaint-motive[ray]'") from None
    # Ray Data's progress lines stay in the session's ray-data.log; warnings still show.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    return ray


def connect(address: str = "local", *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to, or
    ``RAY_ADDRESS``; ``ray://HEAD:10001``: a remote one), or with ``local`` start one on this
    machine (``num_cpus`` cores, default all) without a dashboard. A no-op when connected."""
    ray = _ray()
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as error:
        raise ConfigurationError(f"cannot reach the Ray cluster at {address!r} "
                                 f"({str(error)[:160]})") from None


class AnalyzeBatch:
    """A Ray actor's work: one analyzer, built once, applied to batch after batch."""

    def __init__(self, settings: Settings, concurrency: int = 8,
                 fallback: Fallback | None = None) -> None:
        from ..analyzer import MotiveAnalyzer

        self.analyzer = MotiveAnalyzer(settings)
        self.analyzer.warm_up()  # the index and the model are opened here, once
        self.concurrency = concurrency
        self.fallback = fallback

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        ids = batch.column("id").to_pylist() if "id" in batch.column_names else None
        columns = [c for c in INPUT_COLUMNS if c in batch.column_names]
        rows = batch.select(columns).to_pylist()
        outcomes = self.analyzer.analyze_many([_record(row) for row in rows],
                                              concurrency=self.concurrency,
                                              fallback=self.fallback)
        return pa.table({
            "id": pa.array([None if i is None else str(i) for i in ids] if ids is not None
                           else [None] * len(rows), pa.string()),
            "result": pa.array([o.result.model_dump_json() if o.result else None
                                for o in outcomes], pa.string()),
            "error": pa.array([json.dumps(o.error, ensure_ascii=False) if o.error else None
                               for o in outcomes], pa.string())})


def _record(row: dict[str, Any]) -> dict[str, Any] | Rejected:
    """A row as the analyzer's record: only the fields that hold something (a Parquet row of
    a text complaint has ``turns`` null, and the other way round)."""
    from ..analysis.batch_runner import Rejected

    record = {k: v for k, v in row.items() if v is not None and k != "id"}
    if isinstance(record.get("turns"), str):  # turns sent as JSON text
        try:
            record["turns"] = json.loads(record["turns"])
        except json.JSONDecodeError:
            return Rejected(InputError("'turns' is neither a list of turns nor JSON text"))
    if "text" not in record and "turns" not in record:
        return Rejected(InputError("the row has no 'text' or 'turns'"))
    return record


def analyze_dataset(dataset: ray.data.Dataset, settings: Settings | None = None, *,
                    workers: int | None = None, batch_size: int = 256, concurrency: int = 8,
                    fallback: Fallback | None = None) -> ray.data.Dataset:
    """Rows ``{id, text | turns, language?, channel?}`` → rows ``{id, result, error}`` (JSON
    text), one per input row, in input order (the dataset keeps its order).

    ``workers`` actors, each holding one analyzer built from ``settings`` (default: this
    process's) and one CPU. The offline analyzer is bound by CPU; the LLM path by
    ``concurrency`` calls in flight per actor. The default leaves one of the cluster's CPUs
    to the stages before (reading files, repartitioning): actors holding every CPU would
    leave them none, and the run would wait forever. A dataset built in memory
    (``from_items``) has no such stage, and can have one worker per CPU.
    """
    ray = _ray()
    from ..settings import load_settings

    settings = load_settings(settings)
    dataset.context.execution_options.preserve_order = True
    if workers is None:
        workers = max(1, cluster_cpus() - 1)
    return dataset.map_batches(
        AnalyzeBatch, fn_constructor_args=(settings, concurrency, fallback),
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
        batch_format="pyarrow", zero_copy_batch=True, num_cpus=1)


def cluster_cpus() -> int:
    """The CPUs of the connected cluster."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


def iter_outcomes(results: ray.data.Dataset) -> Iterator[Outcome]:
    """The rows of ``analyze_dataset``'s output as ``Outcome`` values, in order, as they
    are computed."""
    from ..analysis.schema import MotiveAnalysis
    from ..analyzer import Outcome

    index = 0
    for batch in results.iter_batches(batch_format="pyarrow", batch_size=None,
                                      prefetch_batches=2):
        for row in cast("pa.Table", batch).to_pylist():
            yield Outcome(index=index, id=row["id"],
                          result=None if row["result"] is None
                          else MotiveAnalysis.model_validate_json(row["result"]),
                          error=None if row["error"] is None else json.loads(row["error"]))
            index += 1


class RayRun:
    """A batch of records analysed on Ray, for ``complaint-motive analyze --ray``: outcomes
    in input order, each as soon as it and those before it are done (like
    ``MotiveAnalyzer.aiter_outcomes``). A row that could not be read (a ``Rejected``) is
    answered here, in its place, without going to the cluster."""

    def __init__(self, analyzer: MotiveAnalyzer, address: str = "local", *,
                 workers: int | None = None, batch_size: int = 256) -> None:
        self.analyzer = analyzer
        self.address = address
        self.workers = workers
        self.batch_size = batch_size

    async def aiter_outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                             fallback: Fallback | None = None) -> AsyncIterator[Outcome]:
        from ..analysis.batch_runner import Rejected
        from ..analyzer import Outcome

        ray = _ray()
        items = list(items)
        await asyncio.to_thread(connect, self.address)
        # The command's own progress bar says how far the run is.
        ray.data.DataContext.get_current().enable_progress_bars = False
        # Built once here, so the workers only open it.
        await asyncio.to_thread(self.analyzer.warm_up)
        unreadable = [isinstance(item, Rejected) for item in items]
        # Every row has every column, turns as JSON text: one table schema for all blocks.
        rows = [{"id": item.get("id"), "text": item.get("text"),
                 "turns": None if item.get("turns") is None
                 else json.dumps(item["turns"], ensure_ascii=False),
                 "language": item.get("language"), "channel": item.get("channel")}
                for item, bad in zip(items, unreadable, strict=True) if not bad]
        stream: Iterator[Outcome] = iter(())
        if rows:
            # Built in memory: nothing runs before the actors, so each CPU can hold one.
            stream = iter_outcomes(analyze_dataset(
                ray.data.from_items(rows), self.analyzer.settings,
                workers=self.workers or await asyncio.to_thread(cluster_cpus),
                batch_size=self.batch_size, concurrency=concurrency, fallback=fallback))
        for index, (item, bad) in enumerate(zip(items, unreadable, strict=True)):
            if bad:
                yield Outcome(index=index, id=item.id, error=item.error.to_dict())
                continue
            outcome = await asyncio.to_thread(next, stream, None)
            if outcome is None or outcome.id != item.get("id"):  # never silently misalign
                raise ConfigurationError("the Ray run returned rows out of order or too few; "
                                         "nothing after this line was written")
            yield outcome.model_copy(update={"index": index})
