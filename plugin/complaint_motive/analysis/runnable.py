"""The LangChain ``Runnable`` protocol over the analyzer's Python API, a role of its own:
``invoke`` / ``ainvoke`` open a run (callbacks see the analyzer, its model calls, its
re-asks and its fallback), ``batch`` / ``abatch`` run the batch runner, ``stream`` /
``astream`` yield the result's parts as they are known."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.runnables.utils import AddableDict

from .schema import AnalyzerInput, MotiveAnalysis
from .streaming import gathered
from .tracing import masked_input

if TYPE_CHECKING:
    from ..vocab import Fallback
    from .batch_runner import BatchRunner
    from .pipeline import Pipeline
    from .types import Backend


class AnalyzerRunnable(Runnable[Any, MotiveAnalysis]):
    """What ``MotiveAnalyzer`` is to LangChain; it provides what is declared below."""

    pipeline: Pipeline
    primary: Backend

    @abstractmethod
    def _second(self, fallback: Fallback | None) -> Backend | None: ...

    @abstractmethod
    def analyze(self, complaint: Any, *, fallback: Fallback | None = None,
                config: RunnableConfig | None = None) -> MotiveAnalysis: ...

    @abstractmethod
    async def aanalyze(self, complaint: Any, *, fallback: Fallback | None = None,
                       config: RunnableConfig | None = None) -> MotiveAnalysis: ...

    @abstractmethod
    def runner(self, fallback: Fallback | None = None) -> BatchRunner: ...

    @property
    def InputType(self) -> type[AnalyzerInput]:  # noqa: N802 (LangChain's name)
        return AnalyzerInput

    @property
    def OutputType(self) -> type[MotiveAnalysis]:  # noqa: N802 (LangChain's name)
        return MotiveAnalysis

    def invoke(self, input: Any, config: RunnableConfig | None = None,
               **kwargs: Any) -> MotiveAnalysis:
        return self._call_with_config(
            lambda _, config: self.analyze(input, config=config, **kwargs),
            masked_input(input), config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> MotiveAnalysis:
        async def run(_: Any, run_manager: Any, config: RunnableConfig) -> MotiveAnalysis:
            return await self.aanalyze(input, config=config, **kwargs)

        return await self._acall_with_config(run, masked_input(input), config)

    async def abatch(self, inputs: list[Any],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Results in input order through the batch runner (blocks prepared together);
        ``return_exceptions``: a failed input's typed error in its place, else the first
        failure is raised. ``max_concurrency`` bounds the model calls in flight."""
        configs = get_config_list(config, len(inputs))
        return await self.runner(kwargs.get("fallback")).results(
            inputs, configs, return_exceptions=return_exceptions)

    def batch(self, inputs: list[Any],
              config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Synchronous ``abatch`` (call ``abatch`` from inside an event loop)."""
        return asyncio.run(self.abatch(inputs, config, return_exceptions=return_exceptions,
                                       **kwargs))

    def stream(self, input: Any, config: RunnableConfig | None = None,  # type: ignore[override]
               **kwargs: Any) -> Iterator[AddableDict]:
        """The result's parts as they are known: ``{"labels": …}``, then ``{"reply": …}``
        pieces of the draft (as the model writes it, for the LLM), then ``{"result": …}``,
        the validated ``MotiveAnalysis``. Added together they make one dict."""
        from .streaming import stream_parts

        yield from stream_parts(self, input, config, **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None,  # type: ignore[override]
                      **kwargs: Any) -> AsyncIterator[AddableDict]:
        """``stream`` for asyncio."""
        from .streaming import astream_parts

        async for part in astream_parts(self, input, config, **kwargs):
            yield part

    def transform(self, input: Iterator[Any], config: RunnableConfig | None = None,
                  **kwargs: Any) -> Iterator[MotiveAnalysis]:
        """Inside a composed chain the next step is handed the result, not its parts."""
        yield self.invoke(gathered(input), config, **kwargs)

    async def atransform(self, input: AsyncIterator[Any],
                         config: RunnableConfig | None = None,
                         **kwargs: Any) -> AsyncIterator[MotiveAnalysis]:
        """``transform`` for asyncio."""
        yield await self.ainvoke(gathered([item async for item in input]), config, **kwargs)
