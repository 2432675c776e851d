"""The reply guard: what a text the model writes (reply, steps, explanations) must never
say — the do-not-say rules' patterns in the taxonomy, plus promises of money in any
notation (Chinese numerals, full-width symbols, k/万)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from functools import cache
from typing import Any

from ..knowledge.taxonomy import Language, load_taxonomy
from .text import normalise

#: An amount of money in any notation, once Chinese numerals are read as digits: symbol
#: before (¥ $ € £ RMB USD 人民币) or unit after (元 块 美元 dollars …), with k / 万 / 千 …
_MULTIPLIER = r"(?:[kKwWmM](?![A-Za-z])|万|千|百|仟|佰|萬|thousand|grand|million)"
_CURRENCY_BEFORE = r"(?:[¥$€£￥]|rmb|cny|usd|us\$|hk\$|eur|gbp|人民币|美元|美金|港币)"
_CURRENCY_AFTER = (r"(?:元|圆|块钱|块|rmb|cny|usd|dollars?|bucks|yuan|euros?|pounds?|"
                   r"美元|美金|人民币|欧元|英镑|港币)")
_NUMBER = r"\d[\d,，]*(?:\.\d+)?"
_AMOUNT = (rf"(?:{_CURRENCY_BEFORE}\s*{_NUMBER}\s*{_MULTIPLIER}?(?:\s*{_CURRENCY_AFTER})?"
           rf"|{_NUMBER}\s*{_MULTIPLIER}?\s*{_CURRENCY_AFTER})")
_SCALE = {"万": 1e4, "萬": 1e4, "w": 1e4, "千": 1e3, "仟": 1e3, "k": 1e3, "thousand": 1e3,
          "grand": 1e3, "百": 1e2, "佰": 1e2, "m": 1e6, "million": 1e6}


@cache
def _promise_amount() -> re.Pattern[str]:
    verbs = "|".join(f"(?:{v})" for v in load_taxonomy().rule("promise_beyond_policy")
                     .amount_verbs)
    return re.compile(rf"(?:{verbs})[^。.!?!?\n]{{0,20}}?(?P<amount>{_AMOUNT})", re.IGNORECASE)


@cache
def _rule_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((rule.id, re.compile("|".join(f"(?:{p})" for p in rule.patterns),
                                      re.IGNORECASE))
                 for rule in load_taxonomy().do_not_say if rule.patterns)


def _amount_value(amount: str) -> float:
    digits = re.search(_NUMBER, amount)
    value = float(re.sub(r"[,，]", "", digits.group(0))) if digits else 0.0
    unit = re.search(_MULTIPLIER, amount, re.IGNORECASE)
    return value * (_SCALE.get(unit.group(0).lower(), 1.0) if unit else 1.0)


@cache
def _numerals_as_digits(text: str) -> str:
    """Chinese numerals (大写 壹万, 小写 一万, 两千五) read as digits, by ``cn2an``."""
    if not re.search("[零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟萬]", text):
        return text
    import cn2an

    with warnings.catch_warnings():  # it warns on forms it does not read (a bare 百)
        warnings.simplefilter("ignore")
        try:
            return str(cn2an.transform(text, "cn2an"))
        except (ValueError, KeyError, IndexError, TypeError):
            return text


def text_violations(text: str, *, max_promised_amount: float = 0.0) -> list[str]:
    """Why a text the model wrote (reply, step, explanation) must not reach an agent as it
    is (empty when it may): the do-not-say rules of the taxonomy, and promises of money
    above ``max_promised_amount`` in any notation.

    >>> text_violations("我们将补偿您人民币壹万元整")
    ['promise_beyond_policy: promises 人民币10000元']
    """
    read = normalise(text)
    problems: list[str] = []
    # Amounts on the text with Chinese numerals as digits; the rules on the text as written
    # (cn2an reads 一定 as 1定).
    for match in _promise_amount().finditer(_numerals_as_digits(read)):
        amount = match.group("amount")
        if _amount_value(amount) > max_promised_amount:
            problems.append(f"promise_beyond_policy: promises {amount.strip()}")
    for rule, pattern in _rule_patterns():
        found = pattern.search(read)
        if found:
            problems.append(f"{rule}: {found.group(0).strip()!r}")
    return problems


def reply_violations(reply: str, *, max_promised_amount: float = 0.0) -> list[str]:
    """``text_violations`` for a reply draft (the name callers have used).

    >>> reply_violations("我们将赔偿您10000元。")
    ['promise_beyond_policy: promises 10000元']
    """
    return text_violations(reply, max_promised_amount=max_promised_amount)


def answer_texts(answer: Any, quotes: Iterable[str] = ()) -> dict[str, str]:
    """Every text field the model wrote, by name, for the guard: the reply, each specific
    step, the explanations. The complaint's own words quoted as evidence (``quotes``) are
    left out of the explanations: a customer's demand quoted is not the model's promise."""
    texts = {"reply": answer.reply}
    texts.update({f"specific_steps[{n}]": step for n, step in enumerate(answer.specific_steps)})
    for name in ("primary_explanation", "stage_explanation"):
        text = getattr(answer, name)
        for quote in sorted(quotes, key=len, reverse=True):
            if quote:
                text = text.replace(quote, " ")
        texts[name] = text
    return texts


def do_not_say(language: Language, motive_id: str | None) -> list[str]:
    """The do-not-say list for a complaint: the taxonomy's rules, then the motive's warnings."""
    taxonomy = load_taxonomy()
    rules = [rule.text(language) for rule in taxonomy.do_not_say]
    if motive_id and taxonomy.is_motive(motive_id):
        rules += list(taxonomy.motive(motive_id).avoid[language])
    return rules
