"""Reasoning and thinking models: which request fields they reject, and their reasoning
kept out of the answer.

- OpenAI's o-series rejects ``temperature`` outright; the gpt-5 family accepts only the
  default (1) unless ``reasoning_effort`` is ``none`` (gpt-5-chat models take any value).
  Their 400: "Unsupported value: 'temperature' does not support 0 with this model. Only the
  default (1) value is supported."
- DeepSeek's and Qwen's thinking modes put their reasoning in ``reasoning_content`` beside
  ``content`` (``ChatOpenAI`` does not read it); models served without a reasoning parser
  (Qwen3 on llama.cpp, vLLM or Ollama) write it into the content as ``<think>…</think>``
  before the JSON. Neither may reach the JSON parser.
"""

from __future__ import annotations

import json
import re
from typing import Any

_O_SERIES = re.compile(r"^(?:.*/)?o\d", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def accepts_temperature(model: str, reasoning_effort: str | None = None) -> bool:
    """Whether the model takes a ``temperature`` other than its default.

    >>> accepts_temperature("gpt-4o-mini"), accepts_temperature("o4-mini")
    (True, False)
    >>> accepts_temperature("gpt-5-mini"), accepts_temperature("gpt-5-mini", "none")
    (False, True)
    """
    name = model.lower().rsplit("/", 1)[-1]
    if _O_SERIES.match(name):
        return False
    if name.startswith("gpt-5") and "chat" not in name:
        return reasoning_effort == "none"
    return True


def after_thinking(text: str) -> str:
    """The text with ``<think>…</think>`` blocks (and an unclosed leading one) removed.

    >>> after_thinking('<think>先看看 {"a": 1}</think>\\n{"b": 2}')
    '{"b": 2}'
    """
    text = _THINK.sub("", text)
    if "</think>" in text:  # some templates open the block in the prompt, not the answer
        text = text.rsplit("</think>", 1)[1]
    return text.strip()


def parse_past_thinking(out: dict[str, Any]) -> dict[str, Any]:
    """The structured-output result with the answer parsed from the content after any
    ``<think>`` block, when the parser gave up because of one."""
    if isinstance(out.get("parsed"), dict):
        return out
    content = getattr(out.get("raw"), "content", None)
    if not isinstance(content, str) or "</think>" not in content.lower():
        return out
    text = after_thinking(content)
    if fenced := _FENCE.match(text):
        text = fenced.group(1)
    try:
        parsed = json.loads(text)
    except ValueError:
        return out
    return {**out, "parsed": parsed, "parsing_error": None} if isinstance(parsed, dict) else out
