"""The LLM backend (``LLMBackend``): the chat call and its re-ask (``backend``), what a
call may cost (``limits``), and reasoning models' quirks (``reasoning``)."""

from .backend import LLMBackend

__all__ = ["LLMBackend"]
