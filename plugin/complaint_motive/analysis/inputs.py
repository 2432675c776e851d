"""What callers hand us, made into one shape: a complaint text or a conversation.

A conversation is a list of turns (``{"role": …, "text": …}``) or the common transcript form
``[1] 客户: …``. The customer's turns are what is analysed; the agent's turns are context.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InputError
from ..knowledge.taxonomy import load_taxonomy
from ..vocab import LANGUAGES, Language, ReplyLanguage
from .text import suspicious_markup

Role = Literal["customer", "agent"]

_CUSTOMER_ROLES = {"customer", "user", "client", "客户", "顾客", "用户", "买家", "乘客", "患者"}
_AGENT_ROLES = {"agent", "assistant", "staff", "support", "客服", "坐席", "商家", "卖家",
                "工作人员", "system"}
_TRANSCRIPT_LINE = re.compile(r"^\s*\[(\d+)\]\s*([^::]{1,20})[::]\s*(.*)$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_TAG = re.compile(r"<[^>]{0,200}>")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
#: Scripts the analyzer cannot read, by the name a warning gives them. Japanese is told
#: from Chinese by its kana.
_OTHER_SCRIPTS: dict[str, re.Pattern[str]] = {
    "Japanese": re.compile(r"[\u3040-\u30ff]"),
    "Korean": re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"),
    "Arabic": re.compile(r"[\u0600-\u06ff]"),
    "Cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "Thai": re.compile(r"[\u0e00-\u0e7f]"),
    "Devanagari": re.compile(r"[\u0900-\u097f]"),
    "Hebrew": re.compile(r"[\u0590-\u05ff]"),
    "Greek": re.compile(r"[\u0370-\u03ff]"),
}


class Turn(BaseModel):
    role: Role
    text: str
    number: int = Field(description="1-based position in the conversation")
    given: str = Field("", description="the turn's text as the caller gave it (evidence "
                       "offsets point into it)")


class ComplaintInput(BaseModel):
    """A cleaned complaint: the text to analyse plus where each part came from."""

    text: str = Field(description="the customer's words, turns joined by newlines")
    turns: list[Turn] = Field([], description="the whole conversation; empty for plain text")
    language: Language
    warnings: list[str] = []
    channel: str | None = Field(None, description="where the text was written, when the "
                                "caller knows (a taxonomy channel id: review, "
                                "regulator_filing…)")
    unreadable: str | None = Field(None, description="why no motive can be read from the "
                                   "text (a script the analyzer does not read, emoji only…)")
    turns_given: bool = Field(False, description="the caller passed the conversation as "
                              "turns; a text that only looks like a transcript is not, so "
                              "its 'agent' lines may be the customer's own writing")
    markup: list[str] = Field([], description="tags removed in cleaning that imitate a "
                              "prompt fence or a chat role token (counted as injection "
                              "signals)")
    given: str = Field("", description="the text as the caller gave it, when it was a "
                       "text (evidence offsets point into it)")

    def turn_of(self, quote: str) -> int | None:
        """The customer turn a quote comes from (None for plain text)."""
        for turn in self.turns:
            if turn.role == "customer" and quote in turn.text:
                return turn.number
        return None

    @property
    def agent_turns(self) -> list[Turn]:
        """The agent's turns: context for the prompt (fenced there, as data), never analysed
        as the customer's words."""
        return [t for t in self.turns if t.role == "agent"]

    @property
    def context(self) -> str:
        """The agent's turns as ``[n] agent: text`` lines."""
        return "\n".join(f"[{t.number}] agent: {t.text}" for t in self.agent_turns)


def clean_text(text: str) -> str:
    """Unescape HTML, drop tags and control characters, fold width, squeeze blank runs."""
    text = html.unescape(_TAG.sub(" ", text))
    text = _CONTROL.sub("", unicodedata.normalize("NFKC", text))
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n", text)).strip()


def detect_language(text: str) -> Language:
    """The reply language: Chinese where Han characters hold their own against Latin
    letters; English otherwise, and for scripts we have no replies in (the wider reach)."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if other_script(text):
        return "en"
    return "zh" if cjk and cjk * 3 >= latin else ("en" if latin else "zh")


def other_script(text: str) -> str | None:
    """The name of a script the analyzer cannot read, when the text is mostly in it."""
    readable = len(_CJK.findall(text)) + len(_LATIN.findall(text))
    for name, pattern in _OTHER_SCRIPTS.items():
        count = len(pattern.findall(text))
        if count and count >= readable / 3:
            return name
    return None


def unreadable_reason(text: str) -> str | None:
    """Why no motive can honestly be read from ``text``, or None when it can.

    >>> unreadable_reason("12345")
    'the text is only digits'
    """
    words = re.sub(r"[\W_]+", "", text)
    if not words:
        return "the text has no words, only symbols or emoji"
    if words.isdigit():
        return "the text is only digits"
    if len(set(words)) == 1 and len(words) > 1:
        return "the text is one character repeated"
    script = other_script(text)
    if script:
        return f"the text is in a script the analyzer does not read ({script})"
    return None


def _role(raw: object) -> Role:
    value = str(raw).strip().lower()
    if value in _CUSTOMER_ROLES:
        return "customer"
    if value in _AGENT_ROLES:
        return "agent"
    raise InputError(f"unknown conversation role {str(raw)[:20]!r}: use 'customer' or 'agent'")


def parse_transcript(text: str) -> list[Turn] | None:
    """Turns from ``[n] role: text`` lines, or None when the text is not a transcript."""
    turns: list[Turn] = []
    for line in text.splitlines():
        match = _TRANSCRIPT_LINE.match(line)
        if match:
            turns.append(Turn(role=_role(match[2]), text=match[3].strip(), number=int(match[1])))
        elif turns and line.strip():
            turns[-1] = turns[-1].model_copy(update={"text": f"{turns[-1].text}\n{line.strip()}"})
        elif line.strip():
            return None
    return turns or None


def to_input(raw: Any, *, max_chars: int, truncate: bool = False,
             reply_language: ReplyLanguage = "auto") -> ComplaintInput:
    """Validate and normalise what the caller passed, or raise ``InputError`` saying why.

    ``raw`` is a text, a list of turns, or a record ``{"text" | "turns", "language"?,
    "channel"?}``. The
    language to answer in: the record's, else ``reply_language`` unless it is ``auto``,
    else the script the customer wrote in."""
    if isinstance(raw, ComplaintInput):
        return raw
    language = None if reply_language == "auto" else reply_language
    channel = None
    if isinstance(raw, Mapping):
        language = raw.get("language") or language
        if language is not None and language not in LANGUAGES:
            raise InputError(f"language must be 'zh' or 'en', not {str(language)[:20]!r}")
        channel = raw.get("channel")
        if channel is not None and channel not in _channels():
            raise InputError(f"channel must be one of {', '.join(_channels())}, not "
                             f"{str(channel)[:30]!r}")
        raw = raw.get("text", raw.get("turns"))
        if raw is None:
            raise InputError("a record needs 'text' (the complaint) or 'turns'")
    turns: list[Turn] | None
    if isinstance(raw, str):
        turns = parse_transcript(raw)
    elif isinstance(raw, Sequence) and not isinstance(raw, bytes | bytearray):
        turns = [_turn(item, n) for n, item in enumerate(raw, start=1)]
    else:
        raise InputError(f"a complaint must be a string or a list of turns, not "
                         f"{type(raw).__name__}")
    turns_given = not isinstance(raw, str)
    markup = _suspicious_markup([raw] if turns is None or isinstance(raw, str)
                                else [t.text for t in turns])
    warnings: list[str] = []
    if turns is None:
        text = clean_text(raw)
    else:
        turns = [t.model_copy(update={"text": clean_text(t.text), "given": t.given or t.text})
                 for t in turns]
        turns = [t for t in turns if t.text]
        text = "\n".join(t.text for t in turns if t.role == "customer")
        if not text and turns:
            raise InputError("the conversation has no customer turn to analyse")
    if not text:
        raise InputError("the complaint is empty: pass the customer's text")
    if len(text) > max_chars:
        if not truncate:
            raise InputError(f"the complaint has {len(text)} characters, over the limit of "
                             f"{max_chars}: shorten it, raise max_chars, or allow truncation")
        text = text[:max_chars]
        warnings.append(f"truncated to {max_chars} characters")
    unreadable = unreadable_reason(text)
    if unreadable:
        warnings.append(unreadable)
    return ComplaintInput(text=text, turns=turns or [], unreadable=unreadable, channel=channel,
                          language=language or detect_language(text), warnings=warnings,
                          turns_given=turns_given and bool(turns), markup=markup,
                          given=raw if isinstance(raw, str) else "")


def _suspicious_markup(texts: list[str]) -> list[str]:
    return [tag for text in texts for tag in suspicious_markup(text)]


def _channels() -> list[str]:
    return [c.id for c in load_taxonomy().channels]


def _turn(item: object, number: int) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, Mapping):
        text = item.get("text", item.get("content"))
        if not isinstance(text, str):
            raise InputError(f"turn {number} has no text")
        return Turn(role=_role(item.get("role", "customer")), text=text, number=number)
    if isinstance(item, Sequence) and len(item) == 2 and isinstance(item[1], str):
        return Turn(role=_role(item[0]), text=item[1], number=number)
    raise InputError(f"turn {number} must be {{'role': …, 'text': …}}, not {type(item).__name__}")
