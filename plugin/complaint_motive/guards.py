"""Guards around the backend: personal data out, injections flagged, reply drafts checked.

The complaint is data, never instructions: it is fenced in the prompt, and attempts to
steer the model are flagged (``injection_attempt``) rather than obeyed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .taxonomy import Language, load_taxonomy

# Ordered: the longer number shapes first, so an ID number is not read as a phone number.
_PII: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("id_number", re.compile(r"(?<!\d)\d{6}(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?!\d)")),
    ("bank_card", re.compile(r"(?<!\d)(?:\d[ -]?){15,18}\d(?!\d)")),
    ("phone", re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")),
    ("phone", re.compile(r"(?<!\d)\+?\d{1,3}[ -]\(?\d{2,4}\)?[ -]\d{3,4}[ -]\d{3,4}(?!\d)")),
    ("landline", re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")),
]


@dataclass(frozen=True)
class Redaction:
    text: str
    count: int
    kinds: tuple[str, ...]


def redact(text: str) -> Redaction:
    """Mask personal data with ``[kind]`` placeholders.

    >>> redact("电话13812345678,邮箱a@b.cn").text
    '电话[phone],邮箱[email]'
    """
    kinds: list[str] = []
    for kind, pattern in _PII:
        text, n = pattern.subn(f"[{kind}]", text)
        kinds += [kind] * n
    return Redaction(text, len(kinds), tuple(dict.fromkeys(kinds)))


_INJECTION = re.compile(
    r"(忽略|无视|忘记|忘掉|跳过)(掉)?(之前|以上|上面|前面|所有|你的|系统)?的?(所有)?(指令|指示|提示|规则|设定|要求)"
    r"|(ignore|disregard|forget)\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier|your|system)?\s*"
    r"(instructions|prompts?|rules)"
    r"|system\s*prompt|系统提示词?|提示词|你的(指令|设定)|你现在是|you are now|act as|"
    r"(输出|打印|泄露|告诉我|reveal|print|show)(你的)?\s*(prompt|提示)"
    r"|(把|将)?(motive|stage|动机|阶段|标签|分类)(设为|改为|标为|标记为|写成)"
    r"|(label|classify|mark)\s+(this|it|me)\s+as"
    r"|(回复|回答|reply|answer)(里|中)?(必须|一定要|要)?(承诺|写上|说)"
    r"|</?(complaint|system|instructions)>", re.IGNORECASE)


def injection_phrases(text: str) -> list[str]:
    """Phrases in the complaint that try to instruct the model."""
    return [m.group(0) for m in _INJECTION.finditer(text)]


# Looser than _INJECTION: words a quote needs to back up a model's injection_attempt flag.
# It never raises the flag itself (a complaint about a "系统" outage is not an injection).
_INSTRUCTION_WORDS = re.compile(
    r"指令|指示|提示词|设定|忽略|无视|你现在是|标签|prompt|instruction|ignore|disregard"
    r"|label|classify", re.IGNORECASE)


def instruction_words(quote: str) -> bool:
    """Whether an evidence quote speaks to the model rather than about the service."""
    return bool(_INSTRUCTION_WORDS.search(quote) or _INJECTION.search(quote))


_AMOUNT = r"(\d[\d,.]*\s*(万|千|百)?\s*(元|块|rmb|人民币|美元|dollars?|yuan)|[¥$€£]\s*\d[\d,.]*)"
_PROMISE_AMOUNT = re.compile(
    r"(赔偿|补偿|赔付|退还|返还|赔|补|退|给您|给你|发放"
    r"|refund|compensat\w*|reimburs\w*|pay you|give you)"
    rf"[^。.!?!?\n]{{0,20}}?{_AMOUNT}", re.IGNORECASE)
_FORBIDDEN: dict[str, re.Pattern[str]] = {
    "discourage_posting": re.compile(
        r"(不要|别|请勿|切勿)[^。.!?!?\n]{0,10}(发|曝光|发布|传)[^。.!?!?\n]{0,6}(网|微博|抖音|媒体|朋友圈)"
        r"|(don'?t|do not|please not)\s+(post|share|publish)\w*[^.!?\n]{0,30}"
        r"(online|social|internet|review)|(delete|remove|take down)\s+(your|the)\s+(review|post)",
        re.IGNORECASE),
    "admit_liability": re.compile(
        r"(完全|全部|全都)是我们的(责任|错)|我们承担全部(责任|损失)|由我们全额赔偿"
        r"|(entirely|completely|fully) our (fault|responsibility)|we accept (full|all) liability",
        re.IGNORECASE),
    "promise_beyond_policy": re.compile(
        r"(保证|一定|肯定|承诺)(会)?(给您|给你)?(全额)?(赔偿|补偿|退款|退全款|免单)|(百分之百|100%)解决"
        r"|we (guarantee|promise) (a |you )?(full )?(refund|compensation)", re.IGNORECASE),
}


def _amount_value(match: str) -> float:
    digits = re.search(r"\d[\d,]*(\.\d+)?", match)
    value = float(digits.group(0).replace(",", "")) if digits else 0.0
    scale = {"万": 10_000, "千": 1_000, "百": 100}
    return value * next((v for k, v in scale.items() if k in match), 1)


def reply_violations(reply: str, *, max_promised_amount: float = 0.0) -> list[str]:
    """Why a reply draft must not reach an agent as it is (empty when it may).

    >>> reply_violations("我们将赔偿您10000元。")
    ['promise_beyond_policy: promises 10000元']
    """
    problems: list[str] = []
    for match in _PROMISE_AMOUNT.finditer(reply):
        amount = match.group(2)
        if _amount_value(amount) > max_promised_amount:
            problems.append(f"promise_beyond_policy: promises {amount.strip()}")
    for rule, pattern in _FORBIDDEN.items():
        found = pattern.search(reply)
        if found:
            problems.append(f"{rule}: {found.group(0).strip()!r}")
    return problems


def do_not_say(language: Language, motive_id: str | None) -> list[str]:
    """The do-not-say list for a complaint: the taxonomy's rules, then the motive's warnings."""
    taxonomy = load_taxonomy()
    rules = [rule.text(language) for rule in taxonomy.do_not_say]
    if motive_id and taxonomy.is_motive(motive_id):
        rules += list(taxonomy.motive(motive_id).avoid[language])
    return rules
