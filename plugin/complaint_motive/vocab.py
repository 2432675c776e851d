"""The small closed vocabularies every module shares, spelled once.

Labels (motives, stages, risk flags …) come from ``corpus/taxonomy.yaml``; these are the
words around them that the code itself branches on: the reply languages, the confidence
levels, the actions they map to, the kinds of need, the backends and the fallback. Each is
a ``Literal`` type for the checker and a tuple for run-time checks, from the same place.

>>> from complaint_motive.vocab import LANGUAGES, LEVELS
>>> LANGUAGES, LEVELS
(('zh', 'en'), ('high', 'medium', 'low'))
"""

from __future__ import annotations

from typing import Literal, get_args

#: The reply languages: a complaint's language, and that of every text shown to an agent.
Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
#: The ``reply_language`` setting: a fixed language, or ``auto`` (follow the complaint).
ReplyLanguage = Literal["auto", "zh", "en"]

#: A coarse confidence level, and a risk level or severity; best (highest) first.
Level = Literal["high", "medium", "low"]
LEVELS: tuple[Level, ...] = get_args(Level)

#: What an agent's tool does with a label at a level (the ``actions`` setting).
Action = Literal["auto_apply", "preselect", "suggest", "human_review"]
ACTIONS: tuple[Action, ...] = get_args(Action)

#: The kind of a need, and a complaint's leading need (理性 vs 感性).
NeedKind = Literal["rational", "emotional"]
NEED_KINDS: tuple[NeedKind, ...] = get_args(NeedKind)

#: The backend that answered (``meta.backend``).
BackendName = Literal["llm", "offline"]
BACKEND_NAMES: tuple[BackendName, ...] = get_args(BackendName)
#: The ``backend`` setting: a backend, or ``auto`` (the LLM when one is configured).
BackendSetting = Literal["auto", "llm", "offline"]

#: What answers when the backend fails: nothing (the error is raised) or the offline analyzer.
Fallback = Literal["none", "offline"]
FALLBACKS: tuple[Fallback, ...] = get_args(Fallback)

#: ``use``: add the multilingual sentence embedding to the offline classifier's features.
SentenceEncoder = Literal["none", "use"]


def level_rank(level: Level) -> int:
    """``low`` 0, ``medium`` 1, ``high`` 2: levels compared as numbers.

    >>> max(["low", "high", "medium"], key=level_rank)
    'high'
    """
    return len(LEVELS) - 1 - LEVELS.index(level)


def level_of_rank(rank: int) -> Level:
    """The level ``level_rank`` maps to ``rank`` (clamped to the scale)."""
    return LEVELS[len(LEVELS) - 1 - max(0, min(rank, len(LEVELS) - 1))]
