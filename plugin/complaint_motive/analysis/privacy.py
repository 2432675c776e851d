"""Personal data out: phone, ID and card numbers and e-mail addresses masked before any
text leaves the process (``redact``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A separator people write inside a number: space, dash, dot (full-width forms are folded
#: before matching).
_SEP = r"[ \t\-.·]?"
_SEPS = r"[ \t\-.·]*"
# Ordered: the longer number shapes first, so an ID number is not read as a phone number.
_PII: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(
        r"[A-Za-z0-9._%+-]+\s*(?:@|\[at\]|\(at\))\s*[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
        r"\.[A-Za-z]{2,}")),
    # 18-digit resident ID (birth date inside), written whole or in 6-8-4 groups.
    ("id_number", re.compile(
        rf"(?<!\d)\d{{6}}{_SEP}(?:18|19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
        rf"{_SEP}\d{{3}}[\dXx](?![\dA-Za-z])")),
    # The 15-digit ID issued before 1999: area, YYMMDD, sequence.
    ("id_number", re.compile(
        r"(?<!\d)\d{6}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}(?!\d)")),
    ("bank_card", re.compile(r"(?<!\d)(?:\d[ \-]?){15,18}\d(?!\d)")),
    # A Chinese mobile number: country code in any form, digits grouped or spaced out.
    ("phone", re.compile(
        rf"(?<![\d+])(?:(?:\+|00)?{_SEPS}86{_SEPS}|\(\+?86\){_SEPS})?1{_SEPS}[3-9]"
        rf"(?:{_SEPS}\d){{9}}(?!\d)")),
    # A landline with its area code: (010)12345678, 010-12345678, 0755 8888 6666, +86 10 …
    ("landline", re.compile(
        rf"(?<!\d)(?:(?:\+|00)86{_SEPS}\(?0?\d{{2,3}}\)?{_SEPS}|\(0\d{{2,3}}\){_SEPS}"
        rf"|0\d{{2,3}}[ \t\-.])\d{{3,4}}{_SEP}\d{{4}}(?:{_SEP}(?:转|ext\.?|x)\s*\d{{1,5}})?"
        r"(?!\d)")),
    # International and North American forms: +44 20 7946 0958, (555) 123-4567.
    ("phone", re.compile(
        r"(?<![\d+])\+\d{1,3}[ \t\-.]?\(?\d{1,4}\)?(?:[ \t\-.]?\d{2,4}){2,4}(?!\d)")),
    ("phone", re.compile(r"(?<!\d)\(?\d{3}\)?[ \t\-.]\d{3}[ \t\-.]\d{4}(?!\d)")),
]
#: Full-width digits and the signs of a number, folded to ASCII before masking (only those:
#: the rest of the text is left as written).
_NUMBER_WIDTH = str.maketrans("０１２３４５６７８９＋－（）．＠", "0123456789+-().@")


@dataclass(frozen=True)
class Redaction:
    text: str
    count: int
    kinds: tuple[str, ...]


def redact(text: str) -> Redaction:
    """Mask personal data with ``[kind]`` placeholders: e-mail addresses, ID numbers (18 and
    15 digits), bank cards, mobile, landline and international phone numbers, as people
    write them (spaces, dashes, dots, country codes, full-width digits). Names and street
    addresses are not masked.

    >>> redact("电话 139 0013 9000,座机(010)12345678").text
    '电话 [phone],座机[landline]'
    """
    text = text.translate(_NUMBER_WIDTH)
    kinds: list[str] = []
    for kind, pattern in _PII:
        text, n = pattern.subn(f"[{kind}]", text)
        kinds += [kind] * n
    return Redaction(text, len(kinds), tuple(dict.fromkeys(kinds)))


