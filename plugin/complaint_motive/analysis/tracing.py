"""Tracing: a child run per step worth seeing (a model attempt, the fallback, a batch
item), and what a trace is shown of an input (personal data masked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig

from .privacy import redact
from .types import Reply

T = TypeVar("T")


def masked_input(raw: Any) -> Any:
    """What a trace is shown of an input: personal data masked, as the model sees it."""
    if isinstance(raw, str):
        return redact(raw).text
    if isinstance(raw, dict):
        shown = dict(raw)
        if isinstance(shown.get("text"), str):
            shown["text"] = redact(shown["text"]).text
        if isinstance(shown.get("turns"), list):
            shown["turns"] = [{**t, "text": redact(t["text"]).text}
                              if isinstance(t, dict) and isinstance(t.get("text"), str)
                              else t for t in shown["turns"]]
        return shown
    return raw


def traced(config: RunnableConfig | None, name: str, inputs: dict[str, Any],
           step: Callable[[RunnableConfig], T]) -> T:
    """Run ``step`` as a child run called ``name`` of the run ``config`` belongs to."""
    from langchain_core.runnables.config import (
        ensure_config,
        get_callback_manager_for_config,
        patch_config,
    )

    config = ensure_config(config)
    run = get_callback_manager_for_config(config).on_chain_start(None, inputs, name=name)
    try:
        output = step(patch_config(config, callbacks=run.get_child()))
    except BaseException as error:
        run.on_chain_error(error)
        raise
    run.on_chain_end(_trace_output(output))
    return output


async def atraced(config: RunnableConfig | None, name: str, inputs: dict[str, Any],
                  step: Callable[[RunnableConfig], Any]) -> Any:
    """``traced`` for a coroutine."""
    from langchain_core.runnables.config import (
        ensure_config,
        get_async_callback_manager_for_config,
        patch_config,
    )

    config = ensure_config(config)
    run = await get_async_callback_manager_for_config(config).on_chain_start(
        None, inputs, name=name)
    try:
        output = await step(patch_config(config, callbacks=run.get_child()))
    except BaseException as error:
        await run.on_chain_error(error)
        raise
    await run.on_chain_end(_trace_output(output))
    return output


def _trace_output(output: Any) -> Any:
    if isinstance(output, Reply):  # labels, not the reply text: enough to follow the run
        return {"backend": output.backend, "model": output.model,
                "primary_motive": output.checked.answer.primary_motive,
                "attempts": output.attempts}
    return output
