"""Normalise numbers and units so that 七天, 7天, 七日, "seven days" and ７天 all read the same.

Both the answer and the key fact go through `normalize`, so matching is a plain substring test on canonical text:
digits are ASCII, Chinese and English number words are digits, units are one canonical word (天, 小时, 元, ...),
ranges use '-', and whitespace survives only between ASCII words.
"""

from __future__ import annotations

import re
import unicodedata

from kefu.guard.cn_numbers import CN_DIGITS, cn_to_int

_RUN_START = set(CN_DIGITS) | {"十"}
# A numeral run starts with a digit or 十 (十五 = 15); runs starting with 百/千/万 are words (百货, 千万别).
_CN_RUN = re.compile(r"[零〇一二两三四五六七八九十][零〇一二两三四五六七八九十百千万]*")
# Words that contain a numeral character but mean no number; converting them would invent numbers.
_IDIOMS = (
    "十分", "一下", "一些", "一起", "一直", "一定", "一般", "一样", "一点", "一旦", "一切", "一律", "一致", "一方面",
    "统一", "唯一", "万一", "一会", "一边", "一向", "一同", "同一", "之一", "一一", "三思", "一时", "不一",
)  # fmt: skip
_EN_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
]  # fmt: skip
_EN_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_ONES_RE, _TENS_RE = "|".join(_EN_ONES), "|".join(_EN_TENS)
_EN_NUMBER = re.compile(
    rf"\b(?:({_ONES_RE})\s+hundred\b(?:\s+and)?\s*)?(?:({_TENS_RE})(?:[-\s]({_ONES_RE})\b)?|({_ONES_RE})\b)?"
)

# (pattern after a number, canonical unit). Order matters: 工作日 before 日, 分钟 before bare words.
_UNITS: list[tuple[str, str]] = [
    (r"个?工作日|working\s+days?|business\s+days?", "工作日"),
    (r"个?自然日|天|日|days?", "天"),
    (r"个?小时|个?钟头|hours?|hrs?|h\b", "小时"),
    (r"分钟|mins?\b|minutes?", "分钟"),
    (r"个月|months?", "个月"),
    (r"块钱|元|块|yuan|rmb|cny", "元"),
    (r"次|times", "次"),
    (r"期|installments?", "期"),
]
_NUM = r"\d+(?:\.\d+)?"
_UNIT_RES = [(re.compile(rf"({_NUM})[\s-]*(?:{pat})"), canon) for pat, canon in _UNITS]
_CURRENCY_PREFIX = re.compile(rf"(?:¥|\brmb|\bcny)\s*({_NUM})")
_RANGE = re.compile(r"(\d)\s*(?:-|–|—|~|〜|到|至|\bto\b)\s*(\d)")
_CLOCK = re.compile(r"(上午|早上|下午|晚上)?(\d{1,2})\s*(?:点|時|时)(半|(\d{1,2})分)?")
_NON_ASCII_SPACE = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")


def _is_idiom(text: str, start: int, end: int) -> bool:
    """Whether the numeral run text[start:end] is part of a word like 一定 or 万一 (but 三十分 is 30 minutes)."""
    lo = max(0, start - 3)
    for idiom in _IDIOMS:
        pos = text.find(idiom, lo, end + 3)
        while pos >= 0:
            # An idiom that starts with a numeral must start the run: in 三十分钟 the 十分 is part of 三十.
            aligned = pos == start if idiom[0] in _RUN_START else pos < end
            if aligned and pos + len(idiom) > start and not text.startswith("钟", pos + len(idiom)):
                return True
            pos = text.find(idiom, pos + 1, end + 3)
    return False


def _replace_cn_numerals(text: str) -> str:
    text = re.sub(r"百分之([零〇一二两三四五六七八九十百]+)", lambda m: f"{cn_to_int(m.group(1))}%", text)

    def repl(m: re.Match[str]) -> str:
        return m.group(0) if _is_idiom(text, m.start(), m.end()) else str(cn_to_int(m.group(0)))

    return _CN_RUN.sub(repl, text)


def _en_value(m: re.Match[str]) -> str:
    hundreds, tens, tens_ones, ones = m.groups()
    if not (hundreds or tens or ones):
        return m.group(0)
    value = (_EN_ONES.index(hundreds) * 100 if hundreds else 0) + (_EN_TENS[tens] if tens else 0)
    value += _EN_ONES.index(tens_ones or ones) if (tens_ones or ones) else 0
    trailing = m.group(0)[len(m.group(0).rstrip()) :]  # "one hundred " swallowed a space; give it back
    return f"{value}{trailing}"


def _clock(m: re.Match[str]) -> str:
    hour = int(m.group(2))
    if m.group(1) in ("下午", "晚上") and hour < 12:
        hour += 12
    minute = "30" if m.group(3) == "半" else f"{int(m.group(4)):02d}" if m.group(4) else "00"
    return f"{hour}:{minute}"


def normalize(text: str) -> str:
    """Canonical form for matching: NFKC, lower case, numerals as digits, canonical units and ranges."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"\s+", " ", text).strip()
    text = _replace_cn_numerals(text)
    text = _EN_NUMBER.sub(_en_value, text)
    text = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", text)
    text = _CURRENCY_PREFIX.sub(r"\1元", text)
    text = _CLOCK.sub(_clock, text)
    text = re.sub(r"(\d{1,2}):(\d{2})", lambda m: f"{int(m.group(1))}:{m.group(2)}", text)
    for pattern, canon in _UNIT_RES:
        text = pattern.sub(rf"\g<1>{canon}", text)
    text = re.sub(r"(\d+)\.0+(?=元)", r"\1", text)
    text = _RANGE.sub(r"\1-\2", text)
    return _NON_ASCII_SPACE.sub("", text)


def find(text: str, phrase: str) -> list[int]:
    """Start offsets in normalize(text) where normalize(phrase) occurs, not inside a longer number (7天 in 17天)."""
    hay, needle = normalize(text), normalize(phrase)
    if not needle:
        return []
    hits, pos = [], hay.find(needle)
    while pos >= 0:
        before = hay[pos - 1] if pos else ""
        after = hay[pos + len(needle)] if pos + len(needle) < len(hay) else ""
        digit_clash = (needle[0].isdigit() and (before.isdigit() or before == ".")) or (
            needle[-1].isdigit() and after.isdigit()
        )
        if not digit_clash:
            hits.append(pos)
        pos = hay.find(needle, pos + 1)
    return hits


def contains(text: str, phrase: str) -> bool:
    """Whether `phrase` (a key fact) appears in `text` once both are normalised."""
    return bool(find(text, phrase))


def numbers_with_units(text: str) -> list[tuple[float, str]]:
    """(value, canonical unit) pairs in the text: the numbers a policy limit can be compared with."""
    units = "|".join(sorted({canon for _, canon in _UNITS}, key=len, reverse=True))
    return [(float(v), u) for v, u in re.findall(rf"({_NUM})({units})", normalize(text))]
