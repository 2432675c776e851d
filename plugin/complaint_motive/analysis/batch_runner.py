"""Batches: one outcome per input, in input order, each as soon as it and every input
before it are done, so a caller can write results as they come.

Inputs are prepared in blocks (``Pipeline.prepare_many``), one block at a time in a thread,
while earlier blocks wait on the model. A local backend (offline) answers a whole block in
that thread; a remote one (the LLM) answers each input on the event loop, at most
``concurrency`` at a time. A failure is that input's error value, never an exception that
loses the others.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, PrivateAttr

from ..errors import ComplaintMotiveError, InputError
from .schema import MotiveAnalysis
from .tracing import atraced, masked_input
from .types import Prepared

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .types import Backend

log = logging.getLogger(__name__)

#: Inputs prepared together when the backend is local (a remote one uses its concurrency).
BLOCK = 64


class Outcome(BaseModel):
    """One input's outcome in a batch: a result or an error, never both, never missing."""

    index: int
    id: str | None = None
    result: MotiveAnalysis | None = None
    error: dict[str, Any] | None = None
    _exception: Exception | None = PrivateAttr(None)

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def exception(self) -> Exception | None:
        """The error itself (a ``ComplaintMotiveError``, or what a bug raised)."""
        return self._exception


@dataclass(frozen=True)
class Rejected:
    """An input that failed before analysis (a row a reader could not read, an item that
    failed a request schema): it keeps its place and becomes that input's error."""

    error: InputError
    id: str | None = None


class BatchRunner:
    """Runs the pipeline over many inputs with a backend and an optional second one."""

    def __init__(self, pipeline: Pipeline, primary: Backend, second: Backend | None) -> None:
        self.pipeline, self.primary, self.second = pipeline, primary, second

    async def outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                       configs: Sequence[RunnableConfig] | None = None,
                       ) -> AsyncIterator[Outcome]:
        """Yield one ``Outcome`` per input, in order. Items are complaints, ``{"id", "text"
        | "turns", …}`` records, or ``Rejected``. With ``configs`` (one per input), each
        input is a run of its own in the callbacks those configs carry."""
        if isinstance(items, str | bytes):
            raise InputError("a batch is a list of complaints, not one string")
        unpacked = [unpack(item) for item in items]
        await asyncio.to_thread(self.pipeline.warm_up)
        gate = asyncio.Semaphore(max(1, concurrency))
        size = BLOCK if self.primary.local else max(1, concurrency)
        previous: asyncio.Future[list[Any]] | None = None
        tasks: list[asyncio.Future[Outcome] | None] = []
        for start in range(0, len(unpacked), size):
            block = unpacked[start:start + size]
            previous = asyncio.ensure_future(self._block(block, previous))
            for offset, (item_id, payload) in enumerate(block):
                index = start + offset
                config = configs[index] if configs else None
                tasks.append(asyncio.ensure_future(self._traced(
                    previous, offset, index, item_id, payload, gate, config)))
        try:
            for position, task in enumerate(tasks):
                assert task is not None
                outcome = await task
                # Let go of what was handed over: a long batch then streams, rather than
                # keeping every result until the last one is yielded.
                tasks[position] = None
                yield outcome
        finally:
            for task in tasks:
                if task is not None:
                    task.cancel()

    async def results(self, items: Sequence[Any], configs: Sequence[RunnableConfig], *,
                      return_exceptions: bool = False) -> list[Any]:
        """LangChain's ``abatch``: results in input order, one run per input; a failed
        input's typed error in its place (``return_exceptions``), else the first failure
        raised. ``max_concurrency`` (of the first config, default 8) bounds the calls."""
        if not items:
            return []
        limit = configs[0].get("max_concurrency") or 8
        results: list[Any] = []
        async for outcome in self.outcomes(items, concurrency=limit, configs=configs):
            if outcome.result is None and not return_exceptions:
                raise outcome.exception or RuntimeError("an input failed without an error")
            results.append(outcome.result if outcome.result is not None
                           else outcome.exception)
        return results

    async def _block(self, block: list[tuple[str | None, Any]],
                     previous: asyncio.Future[list[Any]] | None) -> list[Any]:
        """Prepare a block (a local backend: answer it) in a thread, after the one before."""
        if previous is not None:
            await asyncio.wait([previous])
        try:
            return await asyncio.to_thread(self.prepare_block, [p for _, p in block])
        except Exception as error:  # the whole block failed (e.g. the index is unreadable)
            return [error] * len(block)

    def prepare_block(self, payloads: list[Any]) -> list[Any]:
        """Each payload prepared (a local backend: answered) or its error, in order."""
        wanted = [p for p in payloads if not isinstance(p, Rejected)]
        prepared = iter(self.pipeline.prepare_many(wanted))
        ready: list[Any] = [p.error if isinstance(p, Rejected) else next(prepared)
                            for p in payloads]
        if not self.primary.local:
            return ready
        fine = [p for p in ready if isinstance(p, Prepared)]
        replies = iter(self.primary.answer_many(fine))
        done: list[Any] = []
        for item in ready:
            if not isinstance(item, Prepared):
                done.append(item)
                continue
            reply = next(replies)
            try:
                if isinstance(reply, Exception):
                    raise reply
                done.append(self.pipeline.finish(item, reply))
            except Exception as error:
                done.append(error)
        return done

    async def _traced(self, block: asyncio.Future[list[Any]], offset: int, index: int,
                      item_id: str | None, payload: Any, gate: asyncio.Semaphore,
                      config: RunnableConfig | None) -> Outcome:
        if config is None or isinstance(payload, Rejected):
            return await self._complete(block, offset, index, item_id, gate, None)
        try:
            return await atraced(config, config.get("run_name") or "MotiveAnalyzer",
                                 {"input": masked_input(payload)},
                                 lambda child: self._complete(block, offset, index, item_id,
                                                              gate, child, raising=True))
        except Exception as error:
            return failed(index, item_id, error)

    async def _complete(self, block: asyncio.Future[list[Any]], offset: int, index: int,
                        item_id: str | None, gate: asyncio.Semaphore,
                        config: RunnableConfig | None, *, raising: bool = False) -> Outcome:
        """The input's outcome once its block is ready; ``raising``: its error raised (so
        the run it belongs to ends in that error)."""
        ready = (await block)[offset]
        try:
            if isinstance(ready, Exception):
                raise ready
            if isinstance(ready, MotiveAnalysis):
                return Outcome(index=index, id=item_id, result=ready)
            async with gate:
                result = await self.pipeline.aanswer(ready, self.primary, self.second, config)
        except Exception as error:
            if raising:
                raise
            return failed(index, item_id, error)
        return Outcome(index=index, id=item_id, result=result)


def unpack(item: Any) -> tuple[str | None, Any]:
    """An input's id, if it is a record (or ``Rejected``), and what the pipeline takes."""
    if isinstance(item, Rejected):
        return item.id, item
    if isinstance(item, dict) and ("text" in item or "turns" in item):
        raw_id = item.get("id")
        return (None if raw_id is None else str(raw_id)), item
    return None, item


def failed(index: int, item_id: str | None, error: Exception) -> Outcome:
    """The outcome of an input that failed: typed errors as they are; anything else (a bug)
    logged, and reported without its message, which could quote the complaint."""
    if isinstance(error, ComplaintMotiveError):
        outcome = Outcome(index=index, id=item_id, error=error.to_dict())
    else:
        # Where it happened, not the message or a full traceback: either could quote the text.
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        log.error("unexpected %s on input %d at %s:%s in %s", type(error).__name__, index,
                  *(frame.filename, frame.lineno, frame.name) if frame else ("?", "?", "?"))
        outcome = Outcome(index=index, id=item_id, error={
            "kind": "internal", "type": type(error).__name__,
            "message": "unexpected internal error; see the log"})
    outcome._exception = error
    return outcome
