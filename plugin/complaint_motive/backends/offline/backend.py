"""The offline backend: answers from the signals and the taxonomy (``writer``), no model
call, so it always has an answer; the fallback when the LLM fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from langchain_core.runnables import RunnableConfig

from ...analysis.schema import Usage
from ...analysis.types import Listener, Prepared, Reply
from ...errors import OutputValidationError
from ...vocab import BackendName
from .writer import offline_answers

if TYPE_CHECKING:
    from ...analysis.classifier import MotiveModel
    from ...analysis.schema import ModelAnswer


class OfflineBackend:
    """The offline analyzer over a trained classifier. ``model`` gives it, loaded on first
    use (training is the slow part of a first run, and an LLM run may never need it)."""

    name: BackendName = "offline"
    local = True

    def __init__(self, model: Callable[[], MotiveModel]) -> None:
        self._model = model

    @property
    def model(self) -> MotiveModel:
        return self._model()

    def answer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
               listener: Listener | None = None) -> Reply:
        """The offline answer (known at once: ``listener`` is not called)."""
        reply = self.answer_many([prepared])[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aanswer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
                      listener: Listener | None = None) -> Reply:
        return await asyncio.to_thread(self.answer, prepared, config)

    def answer_many(self, prepared: Sequence[Prepared]) -> list[Reply | Exception]:
        """One pass finds the evidence clauses of the whole block."""
        answers = offline_answers([(p.complaint, p.clauses, p.signals, p.chunks) for p in prepared],
                                  self.model)
        replies: list[Reply | Exception] = []
        for ready, answer in zip(prepared, answers, strict=True):
            try:
                replies.append(self._checked(ready, answer))
            except Exception as error:
                replies.append(error)
        return replies

    def _checked(self, prepared: Prepared, answer: ModelAnswer) -> Reply:
        checked = prepared.check(answer)
        if checked.problems:  # the offline answer is built to pass; a failure here is a bug
            raise OutputValidationError(
                f"offline answer failed validation: {checked.problems[0]}",
                problems=checked.problems)
        return Reply(checked, Usage(), 0, "offline", f"offline/{self.model.version}")
