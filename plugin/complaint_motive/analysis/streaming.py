"""``MotiveAnalyzer.stream`` / ``astream``: the result's parts as they are known.

The parts are ``AddableDict`` s, so added together they make one dict (as LangChain's own
streams do):

* ``{"labels": {"primary_motive", "secondary_motives", "stage"}}`` — for the LLM, the
  model's labels as soon as it has written them (before validation: the result may still
  differ after repair, a re-ask or the fallback);
* ``{"reply": …}`` — pieces of the reply draft as the model writes it (the first attempt;
  a re-ask is not streamed);
* ``{"result": MotiveAnalysis}`` — the validated result, last.

The offline backend knows everything at once: its parts come together.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.utils import AddableDict

from ..knowledge.taxonomy import load_taxonomy
from .schema import MotiveAnalysis
from .tracing import masked_input

if TYPE_CHECKING:
    from .runnable import AnalyzerRunnable

_DONE = object()


def gathered(chunks: Iterable[Any]) -> Any:
    """An input streamed in chunks, put together as LangChain does (``+``; a chunk that
    cannot be added replaces what came before)."""
    whole: Any = _DONE
    for chunk in chunks:
        if whole is _DONE:
            whole = chunk
            continue
        try:
            whole = whole + chunk
        except TypeError:
            whole = chunk
    return None if whole is _DONE else whole


class _Drafts:
    """Turns the growing partial answer into parts: the labels once the model has moved
    past them, then each new piece of the reply."""

    def __init__(self, emit: Callable[[AddableDict], None]) -> None:
        self.emit, self.labelled, self.reply = emit, False, ""
        taxonomy = load_taxonomy()
        self.motives = {m.id for m in taxonomy.motives} | {a.id for a in taxonomy.abstentions}
        self.stages = {s.id for s in taxonomy.stages}

    def __call__(self, partial: dict[str, Any]) -> None:
        # A string value is complete once a later field has started.
        if not self.labelled and ("stage_confidence" in partial or "reply" in partial) \
                and partial.get("primary_motive") in self.motives \
                and partial.get("stage") in self.stages:
            self.labelled = True
            secondary = partial.get("secondary_motives")
            self.emit(AddableDict(labels={
                "primary_motive": partial["primary_motive"],
                "secondary_motives": [m for m in secondary if m in self.motives]
                if isinstance(secondary, list) else [],
                "stage": partial["stage"]}))
        reply = partial.get("reply")
        if self.labelled and isinstance(reply, str) and len(reply) > len(self.reply) \
                and reply.startswith(self.reply):
            self.emit(AddableDict(reply=reply[len(self.reply):]))
            self.reply = reply


def _whole(result: MotiveAnalysis, sent: _Drafts) -> Iterator[AddableDict]:
    """The parts not streamed yet, then the result."""
    if not sent.labelled:
        yield AddableDict(labels={
            "primary_motive": result.primary_motive.id,
            "secondary_motives": [m.id for m in result.secondary_motives],
            "stage": result.stage.id if result.stage else None})
    if not sent.reply:
        yield AddableDict(reply=result.reply.text)
    yield AddableDict(result=result)


def stream_parts(analyzer: AnalyzerRunnable, input: Any, config: RunnableConfig | None,
                 **kwargs: Any) -> Iterator[AddableDict]:
    config = ensure_config(config)
    run = get_callback_manager_for_config(config).on_chain_start(
        None, masked_input(input), name=config.get("run_name") or analyzer.get_name())
    child = patch_config(config, callbacks=run.get_child())
    try:
        prepared = analyzer.pipeline.prepare(input)
        second = analyzer._second(kwargs.get("fallback"))
        parts: queue.Queue[Any] = queue.Queue()
        drafts = _Drafts(parts.put)
        outcome: list[Any] = []

        def work() -> None:  # the backend writes; this generator hands the parts on
            try:
                outcome.append(analyzer.pipeline.answer(
                    prepared, analyzer.primary, second, child, listener=drafts))
            except BaseException as error:
                outcome.append(error)
            parts.put(_DONE)

        threading.Thread(target=work, daemon=True).start()
        while (part := parts.get()) is not _DONE:
            yield part
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        result = outcome[0]
        yield from _whole(result, drafts)
    except BaseException as error:
        run.on_chain_error(error)
        raise
    run.on_chain_end(result)


async def astream_parts(analyzer: AnalyzerRunnable, input: Any, config: RunnableConfig | None,
                        **kwargs: Any) -> AsyncIterator[AddableDict]:
    config = ensure_config(config)
    run = await get_async_callback_manager_for_config(config).on_chain_start(
        None, masked_input(input), name=config.get("run_name") or analyzer.get_name())
    child = patch_config(config, callbacks=run.get_child())
    try:
        prepared = await asyncio.to_thread(analyzer.pipeline.prepare, input)
        second = analyzer._second(kwargs.get("fallback"))
        parts: asyncio.Queue[Any] = asyncio.Queue()
        drafts = _Drafts(parts.put_nowait)
        task = asyncio.ensure_future(analyzer.pipeline.aanswer(
            prepared, analyzer.primary, second, child, listener=drafts))
        task.add_done_callback(lambda _: parts.put_nowait(_DONE))
        try:
            while (part := await parts.get()) is not _DONE:
                yield part
        finally:
            if not task.done():
                task.cancel()
        result = task.result()
        for part in _whole(result, drafts):
            yield part
    except BaseException as error:
        await run.on_chain_error(error)
        raise
    await run.on_chain_end(result)
