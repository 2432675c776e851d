"""The offline backend: answers from the signals and the taxonomy (``offline``), no model
call, so it always has an answer; the fallback when the LLM fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.runnables import RunnableConfig

from ..errors import OutputValidationError
from ..schema import Usage
from . import BackendName, Listener, Reply

if TYPE_CHECKING:
    from ..offline import MotiveModel
    from ..pipeline import Pipeline, Prepared
    from ..schema import ModelAnswer


class OfflineBackend:
    """The offline analyzer over the pipeline's trained model."""

    name: BackendName = "offline"
    local = True

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def model(self) -> MotiveModel:
        return self.pipeline.model

    def answer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
               listener: Listener | None = None) -> Reply:
        """The offline answer (known at once: ``listener`` is not called)."""
        from ..offline import offline_answers

        answer = offline_answers([(prepared.complaint, prepared.signals, prepared.chunks)],
                                 self.model)[0]
        return self._checked(prepared, answer)

    async def aanswer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
                      listener: Listener | None = None) -> Reply:
        import asyncio

        return await asyncio.to_thread(self.answer, prepared, config)

    def answer_many(self, prepared: Sequence[Prepared]) -> list[Reply | Exception]:
        """One pass finds the evidence clauses of the whole block."""
        from ..offline import offline_answers

        answers = offline_answers([(p.complaint, p.signals, p.chunks) for p in prepared],
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
