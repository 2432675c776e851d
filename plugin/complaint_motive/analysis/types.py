"""The types the analysis hands from step to step, at the bottom of the analysis so the
backends can stand above it: what the guard step yields (``Guarded``), what a backend is
given (``Prepared``), what it returns (``Reply``), and what a backend is (``Backend``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.runnables import RunnableConfig

from ..vocab import BackendName

if TYPE_CHECKING:
    from ..knowledge.corpus import Chunk
    from .clauses import Clause
    from .injection import InjectionReport
    from .inputs import ComplaintInput
    from .schema import ModelAnswer, Usage
    from .signals import Signals
    from .validation import Checked


@dataclass(frozen=True)
class Versions:
    """What prepared an analysis: the prompt files, the guidance corpus, the taxonomy."""

    prompt: str
    corpus: str
    taxonomy: int


@dataclass
class Guarded:
    """The guard step's output: valid input with personal data masked (before anything
    leaves the process), and what the injection detector found in it."""

    complaint: ComplaintInput
    redactions: int
    injection: InjectionReport


@dataclass
class Prepared:
    """Everything a backend needs for one complaint: the guarded input, its signals, the
    guidance retrieved for it, and what validation holds the answer to."""

    complaint: ComplaintInput
    clauses: list[Clause]
    redactions: int
    injection: InjectionReport
    signals: Signals
    chunks: list[Chunk]
    versions: Versions
    started: float
    max_promised_amount: float = 0.0

    def check(self, answer: ModelAnswer, *, copied_from: dict[str, str] | None = None
              ) -> Checked:
        """The validation step: repair what can be repaired; what is left is ``problems``
        (clause numbers and handles must be this request's, claims supported by the
        text). ``copied_from`` (the texts a model's reply could copy: prompt, guidance,
        exemplars, complaint) turns on the degenerate-answer checks for a model."""
        from .validation import check_answer

        return check_answer(answer, self.clauses, len(self.chunks),
                            max_promised_amount=self.max_promised_amount,
                            injection=self.injection.evidence,
                            risk_cues=self.signals.risk_cues,
                            source_cues=self.signals.source_cues, sources=copied_from)

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)


#: Sees the answer as the backend writes it: the fields written so far.
Listener = Callable[[dict[str, Any]], None]


@dataclass
class Reply:
    """A valid answer, as repaired (``checked``), with the usage of every attempt and the
    name of what wrote it."""

    checked: Checked
    usage: Usage
    attempts: int
    backend: BackendName
    model: str

    @property
    def answer(self) -> ModelAnswer:
        return self.checked.answer


class Backend(Protocol):
    """What answers a prepared complaint."""

    #: ``meta.backend`` of its results.
    name: BackendName
    #: True when it answers in-process: a batch is answered a block at a time in a thread
    #: (``answer_many``); otherwise calls run concurrently on the event loop (``aanswer``).
    local: bool

    def answer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
               listener: Listener | None = None) -> Reply:
        """A validated reply, or a ``BackendError`` / ``OutputValidationError``.
        ``listener`` sees the answer as it is written, if the backend writes it in parts
        (streaming); a backend that knows it at once may ignore it."""
        ...

    async def aanswer(self, prepared: Prepared, config: RunnableConfig | None = None, *,
                      listener: Listener | None = None) -> Reply:
        """``answer`` for asyncio."""
        ...

    def answer_many(self, prepared: Sequence[Prepared]) -> list[Reply | Exception]:
        """Replies for a block, in order; a failure is that input's exception."""
        ...
