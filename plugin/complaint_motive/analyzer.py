"""``MotiveAnalyzer``: the one entry point for helpdesk tools and evaluation scripts, and a
LangChain ``Runnable``. A facade: the steps are in ``pipeline``, the backends in
``backends``, batches in ``batch_runner``, the Runnable protocol in ``runnable``.

>>> analyzer = MotiveAnalyzer.from_settings()                 # doctest: +SKIP
>>> analyzer.analyze("退款申请半个月了还没到账!").primary_motive.id  # doctest: +SKIP
'compensation'
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig

from .analysis.batch_runner import BatchRunner, Outcome
from .analysis.pipeline import Pipeline
from .analysis.runnable import AnalyzerRunnable
from .analysis.schema import MotiveAnalysis
from .analysis.types import Backend
from .backends.offline.backend import OfflineBackend
from .settings import Settings, load_settings
from .vocab import BackendName, Fallback

if TYPE_CHECKING:
    import httpx
    from langchain_core.tools import StructuredTool
    from pydantic import BaseModel

    from .analysis.classifier import MotiveModel
    from .backends.llm.backend import LLMBackend
    from .knowledge.index import KnowledgeIndex

__all__ = ["Fallback", "MotiveAnalyzer", "Outcome"]
log = logging.getLogger(__name__)


class MotiveAnalyzer(AnalyzerRunnable):
    """Analyse complaints with the configured backend. As a ``Runnable``: ``invoke`` /
    ``ainvoke`` open a run of their own (callbacks see the analyzer, its model calls, its
    re-asks and its fallback), ``batch`` / ``abatch`` run the batch runner, ``stream`` /
    ``astream`` yield the result's parts as they are known."""

    def __init__(self, settings: Settings, *, index: KnowledgeIndex | None = None,
                 llm: LLMBackend | None = None) -> None:
        from .knowledge.index import KnowledgeIndex

        self.settings = settings
        self.index = index or KnowledgeIndex.from_settings(settings)
        self.pipeline = Pipeline(settings, self.index)
        self.offline = OfflineBackend(lambda: self.pipeline.model)
        self.backend: BackendName = settings.resolved_backend()
        if self.backend == "llm" and llm is None:
            from .backends.llm.backend import LLMBackend

            llm = LLMBackend(settings)
        self.llm = llm if self.backend == "llm" else None
        self.primary: Backend = self.llm or self.offline
        if settings.backend == "auto" and self.backend == "offline":
            log.info("no LLM endpoint configured: using the offline analyzer")

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      http_client: httpx.Client | None = None,
                      http_async_client: httpx.AsyncClient | None = None,
                      **overrides: Any) -> MotiveAnalyzer:
        """Build from settings (environment, TOML file) with keyword overrides on top.
        ``http_client`` / ``http_async_client`` are handed to the ``openai`` client."""
        settings = load_settings(settings, **overrides)
        llm = None
        if settings.resolved_backend() == "llm":
            from .backends.llm.backend import LLMBackend

            llm = LLMBackend(settings, http_client=http_client,
                             http_async_client=http_async_client)
        return cls(settings, llm=llm)

    @property
    def model(self) -> MotiveModel:
        """The trained offline classifier (signals, offline answers)."""
        return self.pipeline.model

    def first_run_work(self) -> list[str]:
        """What the first analysis will have to do before it can answer (empty once the
        index folder holds everything), so a caller can say so instead of going quiet."""
        return self.pipeline.first_run_work()

    def warm_up(self) -> None:
        """Build or open the index and the trained model now rather than on first use."""
        self.pipeline.warm_up()

    def _second(self, fallback: Fallback | None) -> Backend | None:
        """The second backend, when the caller (or the settings) allows one."""
        wanted = (fallback or self.settings.fallback) == "offline"
        return self.offline if wanted and self.primary is not self.offline else None

    def runner(self, fallback: Fallback | None = None) -> BatchRunner:
        return BatchRunner(self.pipeline, self.primary, self._second(fallback))

    # -- the Python API ------------------------------------------------------------------

    def analyze(self, complaint: Any, *, fallback: Fallback | None = None,
                config: RunnableConfig | None = None) -> MotiveAnalysis:
        """Analyse one complaint: a text, a ``[n] role: text`` transcript, or a list of turns.

        Raises an ``InputError`` for input that cannot be analysed, and a ``BackendError``
        or ``OutputValidationError`` when the LLM fails (unless ``fallback="offline"``).
        """
        prepared = self.pipeline.prepare(complaint)
        return self.pipeline.answer(prepared, self.primary, self._second(fallback), config)

    async def aanalyze(self, complaint: Any, *, fallback: Fallback | None = None,
                       config: RunnableConfig | None = None) -> MotiveAnalysis:
        """``analyze`` for asyncio; local work runs in a thread so the loop keeps moving."""
        prepared = await asyncio.to_thread(self.pipeline.prepare, complaint)
        return await self.pipeline.aanswer(prepared, self.primary, self._second(fallback),
                                           config)

    def aiter_outcomes(self, items: Iterable[Any], *, concurrency: int = 8,
                       fallback: Fallback | None = None) -> AsyncIterator[Outcome]:
        """One ``Outcome`` per input, in input order, each as soon as it and every input
        before it are done (see ``batch_runner``)."""
        return self.runner(fallback).outcomes(items, concurrency=concurrency)

    async def aanalyze_many(self, items: Iterable[Any], *, concurrency: int = 8,
                            fallback: Fallback | None = None) -> list[Outcome]:
        """One ``Outcome`` per input, in input order; a failure is that input's error value."""
        return [o async for o in self.aiter_outcomes(items, concurrency=concurrency,
                                                     fallback=fallback)]

    def analyze_many(self, items: Iterable[Any], *, concurrency: int = 8,
                     fallback: Fallback | None = None) -> list[Outcome]:
        """Synchronous ``aanalyze_many`` (call ``aanalyze_many`` from inside an event loop)."""
        return asyncio.run(self.aanalyze_many(items, concurrency=concurrency,
                                              fallback=fallback))

    def record_correction(self, result: MotiveAnalysis, *, text: str,
                          motive: str | None = None, stage: str | None = None,
                          note: str | None = None, path: Path | None = None) -> Path:
        """Append an agent's correction of ``result`` to the corrections file."""
        from .knowledge.corrections import record_correction

        return record_correction(result, text=text, motive=motive, stage=stage, note=note,
                                 path=path or self.settings.corrections_file)

    def as_tool(self, args_schema: type[BaseModel] | None = None, *, name: str | None = None,
                description: str | None = None,
                arg_types: dict[str, type] | None = None) -> StructuredTool:
        """This analyzer as a LangChain tool for a tool-calling model (see ``tool.py``); its
        arguments are always ``ComplaintArgs``."""
        from .analysis.tool import TOOL_DESCRIPTION, TOOL_NAME, analyzer_tool

        if args_schema is not None or arg_types is not None:
            raise TypeError("the analyzer's tool takes ComplaintArgs; name and description "
                            "are the only options")
        return analyzer_tool(self, name=name or TOOL_NAME,
                             description=description or TOOL_DESCRIPTION)
