"""Text as the guards read it: NFKC (full-width and styled letters folded), invisible and
bidi characters removed, homoglyphs folded to Latin, a squeezed form without spaces or
punctuation; and the markup shapes that imitate a prompt fence or a chat role token, which
the input step counts before cleaning strips tags."""

from __future__ import annotations

import re
import unicodedata
from functools import cache

#: Characters that render as nothing (zero-width, joiners, soft hyphen, variation selectors,
#: tags) or reorder text (bidi controls): instructions hide between them.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]")
_LEET = str.maketrans("013457@$", "oieastas")


@cache
def _homoglyph(char: str) -> str:
    """The Latin letter ``char`` is made to look like (Cyrillic а, Greek ο …), or itself.

    Uses the Unicode confusables table shipped in ``confusable_homoglyphs``."""
    if char.isascii() or not char.isalpha() or "\u2e80" <= char <= "\U0002ffff":
        return char  # ASCII, CJK and non-letters stay
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(char, preferred_aliases=["latin"], greedy=False)
    for glyph in (found[0]["homoglyphs"] if found else []):
        if glyph["c"].isascii() and glyph["c"].isalpha():
            return str(glyph["c"])
    return char


def normalise(text: str, *, fold_homoglyphs: bool = True) -> str:
    """Text as the detector reads it: NFKC (full-width and styled letters folded),
    invisible and bidi characters removed, homoglyphs folded to Latin letters.

    >>> normalise("ｉｇ\u200bnоre")  # full-width, a zero-width space, a Cyrillic о
    'ignore'
    """
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    if fold_homoglyphs:
        text = "".join(_homoglyph(c) for c in text)
    return text


def squeeze(text: str) -> str:
    """Normalised text lower-cased, spaces and punctuation removed, digits read as the
    letters they stand in for: ``i g n 0 r e`` and ``ig-nore`` both become ``ignore``."""
    return re.sub(r"[\W_]+", "", normalise(text).lower()).translate(_LEET)



#: Markup that imitates a fence or a chat template's role token: ``</complaint>``,
#: ``<|im_start|>``, ``[INST]``, ``<system>``.
FENCE_LIKE = re.compile(
    r"[<‹〈《＜«]\s*/?\s*(complaint|turn|system|instructions?|context|data|user|assistant|"
    r"prompt|input|output|human|ai|model|developer|guidance|examples?|answer|end)\b[^>›〉》＞»]{0,80}"
    r"[>›〉》＞»]?|[<‹]\s*\|[^|]{1,30}\|\s*[>›]?|\[/?(INST|SYS|SYSTEM)\]|<<\s*/?SYS\s*>>"
    r"|\b(end|beginning|start)\s+of\s+(the\s+)?(complaint|system\s+prompt|instructions"
    r"|user\s+input)\s*(text\s*)?[\]】:：>-]"
    r"|[【\[](投诉|用户输入|系统提示|指令)(内容)?(结束|开始)[】\]]", re.IGNORECASE)

def suspicious_markup(raw: str) -> list[str]:
    """Tags in the raw input that imitate a fence or a role token (cleaning strips tags,
    so they are counted before it)."""
    return [m.group(0) for m in FENCE_LIKE.finditer(normalise(raw))][:5]


