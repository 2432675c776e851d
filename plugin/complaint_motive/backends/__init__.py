"""The backends that answer a prepared complaint (``pipeline.Prepared``): the LLM
(``backends.llm``) and the offline analyzer (``backends.offline``), behind one protocol.

A backend returns a validated ``Reply`` or raises a typed error; the pipeline turns the
reply into the result, and answers with a second backend when the first fails and the
caller allows it (``fallback="offline"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.runnables import RunnableConfig

from ..vocab import BackendName

if TYPE_CHECKING:
    from ..pipeline import Prepared
    from ..schema import ModelAnswer, Usage
    from ..validation import Checked

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
