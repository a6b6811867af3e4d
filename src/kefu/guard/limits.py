"""Numbers an answer states for a policy concept beyond what the policy allows: a longer return window, a faster
shipping time (guard.policy_limits). Rules are data: `LIMIT_RULES`, phrases stating a number for one concept. A
number its clause negates does not count (kefu.guard.findings.negated, as for promises).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kefu.errors import KefuError
from kefu.guard.cn_numbers import cn_to_int
from kefu.guard.findings import CLAUSE_CHAR as _C
from kefu.guard.findings import Finding, negated, sentence_of
from kefu.guard.lang import Lang

_EN_NUMBERS = {
    "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "sixty": 60, "ninety": 90,
}  # fmt: skip
_EN_NUM = "|".join(w for w in _EN_NUMBERS if w != "a")
# "within two weeks", "a month": English number words (a only right before its unit).
_NUM = (
    r"[0-9]+(?:\.[0-9]+)?|[零〇一二两三四五六七八九十百半]+"
    rf"|(?i:\b(?:{_EN_NUM})\b|\ba(?= (?:day|week|month|year)s?\b))"
)
# A number (or range: 1-3, 三到五) and its time unit, Chinese or English: "30天", "十五个工作日", "48 hours", "30-day".
_N = (
    # The lookbehind starts a number only where its digits start: no retrying every suffix of a long digit run.
    # Calendar dates are not durations: "11月17日" (the 17 follows 月), "11月" without 个, "2026年11月".
    r"(?<![0-9.零〇一二两三四五六七八九十百半月])"
    rf"(?P<n>(?:{_NUM})(?: *(?:-|~|～|至|到|to) *(?:{_NUM}))?) *-? *(?:个)?(?:business |working |calendar )?"
    r"(?P<u>工作日|自然日|天|日|小时|钟头|周|星期|(?<=个)月|年(?![0-9零〇一二两三四五六七八九十]+月)"
    r"|days?\b|hours?\b|weeks?\b|months?\b|years?\b)"
)
_CE = r"[^.;!?\n]"
_QUALITY = r"质量|破损|故障|瑕疵|坏|错发|漏发|(?i:quality|defect|damaged|faulty|broken|wrong item)"
_DAYS = {"工作日": 1.0, "自然日": 1.0, "天": 1.0, "日": 1.0, "小时": 1 / 24, "钟头": 1 / 24, "周": 7.0, "星期": 7.0}
_DAYS |= {"月": 30.0, "年": 365.0, "day": 1.0, "hour": 1 / 24, "week": 7.0, "month": 30.0, "year": 365.0}


@dataclass(frozen=True)
class LimitRule:
    """Phrases stating a number for one policy concept.

    direction 'max': a window (return days) that an answer must not exceed; 'min': a timeline (shipping hours) an
    answer must not undercut. `skip` disarms a match whose clause mentions it (quality returns have their own window).
    """

    direction: Literal["max", "min"]
    unit: Literal["days", "hours"]
    patterns: tuple[str, ...]
    skip: str = ""
    trigger: str = ""  # words every pattern needs (case-insensitive): a text without them skips the patterns


LIMIT_RULES: dict[str, LimitRule] = {
    "return_days": LimitRule(
        "max",
        "days",
        (
            rf"{_N}(?:之)?内?{_C}{{0,4}}?无理由",
            rf"无理由(?:退货|退换货?)?{_C}{{0,10}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,5}}?(?:随便|随时|都能|都可以|包)退",
            rf"{_N}(?:之)?内?都?(?:可以|可|能)?(?:申请)?(?:退货|退换|退款退货)",
            rf"(?i:{_N}[- ]?(?:no[- ]questions?[- ]asked |free |hassle[- ]free |money[- ]back )?returns?\b)",
            rf"退(?:货|换货?)(?:的)?(?:期限|时限|周期|期)(?:是|为|有|只有)?{_C}{{0,4}}?{_N}",
            rf"(?i:\breturn (?:window|period|policy|deadline)\b{_CE}{{0,15}}?{_N})",
            rf"(?i:{_N} to (?:return|send (?:it|them|the item) back)\b)",
            rf"(?i:\b(?:returns?|returned|returnable)\b{_CE}{{0,20}}?\b(?:within|in|up to|for) {_N})",
        ),
        skip=_QUALITY,
        trigger=r"退|无理由|return",
    ),
    "quality_return_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:{_QUALITY})[^。！？；!?;\n]{{0,16}}?{_N}(?:之)?内?{_C}{{0,7}}?(?:退|换)",
            rf"(?i:\b(?:defective|damaged|faulty|broken|quality)\b{_CE}{{0,30}}?{_N})",
        ),
        trigger=r"质量|破损|故障|瑕疵|坏|错发|漏发|quality|defect|damaged|faulty|broken|wrong item",
    ),
    "exchange_days": LimitRule(
        "max",
        "days",
        (rf"{_N}(?:之)?内?{_C}{{0,4}}?换货", rf"换货{_C}{{0,8}}?{_N}", rf"(?i:\bexchanges?\b{_CE}{{0,20}}?{_N})"),
        skip=_QUALITY,
        trigger=r"换货|exchange",
    ),
    "price_protection_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:价保|保价|价格保护|退还差价|退差价|补差价){_C}{{0,10}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,6}}?(?:价保|保价|价格保护|退还差价|退差价|补差价)",
            rf"(?i:\bprice (?:protection|match|guarantee|adjustment)s?\b{_CE}{{0,20}}?{_N})",
            rf"(?i:{_N}[- ]?price (?:protection|match|guarantee|adjustment))",
        ),
        trigger=r"价保|保价|价格保护|差价|price",
    ),
    "warranty_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:保修|质保|包修|保固){_C}{{0,6}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,3}}?(?:保修|质保|包修)",
            rf"(?i:{_N}[- ]?warranty)",
            rf"(?i:\bwarranty\b{_CE}{{0,15}}?{_N})",
        ),
        trigger=r"保修|质保|包修|保固|warranty",
    ),
    "ship_hours": LimitRule(
        "min",
        "hours",
        (
            rf"{_N}(?:之)?内(?:就|即可|会|能)?(?:发货|发出|寄出|出库)",
            rf"(?:发货时间|发货时效){_C}{{0,6}}?{_N}",
            rf"(?i:\b(?:ships?|shipped|dispatch(?:ed)?|sent out) (?:out )?within {_N})",
        ),
        trigger=r"发货|发出|寄出|出库|ship|dispatch|sent",
    ),
    "refund_days": LimitRule(
        "min",
        "days",
        (
            rf"退款{_C}{{0,12}}?{_N}(?:之)?内?{_C}{{0,3}}?(?:到账|退回|返还)",
            rf"{_N}(?:之)?内(?:就|即可|会)?(?:到账|退款到账|完成退款)",
            rf"(?i:\brefunds?\b{_CE}{{0,25}}?\bwithin {_N})",
        ),
        trigger=r"退款|到账|退回|返还|refund",
    ),
}
_LIMIT_COMPILED = {key: tuple(re.compile(p) for p in rule.patterns) for key, rule in LIMIT_RULES.items()}
_LIMIT_TRIGGERS = {key: re.compile(rule.trigger, re.I) for key, rule in LIMIT_RULES.items()}
_DURATION = re.compile(rf"(?i:{_N})")  # every limit pattern holds one: a text without any needs no further look


def parse_number(s: str) -> float:
    """'30' -> 30, '十五' -> 15, '三十' -> 30, '一百八十' -> 180, '半' -> 0.5, '两个半' -> 2.5, 'two' -> 2."""
    if s[0].isdigit():
        return float(s)
    if s.lower() in _EN_NUMBERS:
        return float(_EN_NUMBERS[s.lower()])
    half = 0.5 if s.endswith("半") else 0.0
    run = s.rstrip("半")
    return (cn_to_int(run) if run else 0) + half


def _amount(m: re.Match[str], unit: str) -> float:
    """The stated amount in the concept's unit; the upper bound of a range ("1-3个工作日" promises 3)."""
    hi = re.split(r" *(?:-|~|～|至|到|to) *", m.group("n"))[-1]
    u = m.group("u").lower().rstrip("s") if m.group("u").isascii() else m.group("u")
    days = parse_number(hi) * _DAYS[u]
    return days * 24 if unit == "hours" else days


def check_limits(text: str, limits: Mapping[str, float]) -> list[Finding]:
    """Numbers an answer states beyond policy: a larger window (return_days...) or a faster timeline (ship_hours...).

    `limits` maps concept keys of LIMIT_RULES to the policy's number, e.g. {"return_days": 7}. Rule id: 'limit.KEY'.
    """
    unknown = sorted(set(limits) - set(LIMIT_RULES))
    if unknown:
        raise KefuError(f"guard.policy_limits: unknown key(s) {unknown}; known: {sorted(LIMIT_RULES)}")
    found: dict[tuple[int, int, str], Finding] = {}
    if not text or not _DURATION.search(text):
        return []
    for key, limit in limits.items():
        rule = LIMIT_RULES[key]
        if not _LIMIT_TRIGGERS[key].search(text):
            continue
        for rx in _LIMIT_COMPILED[key]:
            for m in rx.finditer(text):
                f = _limit_finding(text, m, key, rule, limit)
                if f is not None:
                    found[(f.start, f.end, f.rule)] = f
    return sorted(found.values(), key=lambda f: (f.start, f.rule))


def _limit_finding(text: str, m: re.Match[str], key: str, rule: LimitRule, limit: float) -> Finding | None:
    amount = _amount(m, rule.unit)
    beyond = amount > limit if rule.direction == "max" else amount < limit
    lang: Lang = "en" if m.group("u").isascii() else "zh"
    if not beyond or negated(text, m.start(), m.end(), lang):
        return None
    if rule.skip and re.search(rule.skip, "".join(sentence_of(text, m.start(), m.end()))):
        return None
    start, end = m.start("n"), m.end("u")
    detail = (
        f"states {amount:g} {rule.unit}; policy {'allows at most' if rule.direction == 'max' else 'needs'} {limit:g}"
    )
    return Finding(f"limit.{key}", start, end, text[start:end], detail)


def states_limit(text: str, key: str, limit: float) -> bool:
    """Whether `text` states the policy number for `key` (an excerpt sentence holding the fact) within the limit."""
    rule = LIMIT_RULES[key]
    for rx in _LIMIT_COMPILED[key]:
        for m in rx.finditer(text):
            amount = _amount(m, rule.unit)
            if amount <= limit if rule.direction == "max" else amount >= limit:
                return True
    return False
