"""The backends that answer a prepared complaint (``analysis.types.Prepared``): the LLM
(``backends.llm``) and the offline analyzer (``backends.offline``), each meeting
``analysis.types.Backend``.

A backend returns a validated ``Reply`` or raises a typed error; the pipeline turns the
reply into the result, and answers with a second backend when the first fails and the
caller allows it (``fallback="offline"``).
"""
