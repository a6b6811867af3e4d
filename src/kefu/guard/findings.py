"""What every guard rule reports, and the text helpers the rules share."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from kefu.guard.lang import Lang


@dataclass(frozen=True)
class Finding:
    """One rule hit: which rule, the [start, end) span in the checked text, the matched text and optional detail."""

    rule: str
    start: int
    end: int
    text: str
    detail: str = ""


CLAUSE_CHAR = r"[^，。！？；,.!?;\n]"  # any character inside the same clause
_CLAUSE_END = re.compile(r"[，。！？；,!?;\n]|\.(?:\s|$)")


def clause_before(text: str, pos: int, limit: int) -> str:
    """Up to `limit` characters before `pos`, cut at the previous clause boundary (comma, full stop, ...)."""
    window = text[max(0, pos - limit) : pos]
    ends = list(_CLAUSE_END.finditer(window))
    return window[ends[-1].end() :] if ends else window


def sentence_of(text: str, start: int, end: int) -> tuple[str, str]:
    """The parts of the sentence around [start, end): (before, after), cut at 。！？；.!?; and newlines."""
    stops = re.compile(r"[。！？；!?;\n]|\.(?:\s|$)")
    before_ends = list(stops.finditer(text, 0, start))
    after = stops.search(text, end)
    return text[before_ends[-1].end() if before_ends else 0 : start], text[end : after.end() if after else len(text)]


_NEG = {
    "zh": re.compile(
        r"无法|不能|不可能|不可以|不会|不敢|没法|没办法|没有办法|难以|未必|并非|并不|恕不|不予|很难|做不到|不好说"
        r"|不一定|不确定|说不准|不保证|不承诺|不支持|不提供|没有|不是|不$"
    ),
    "en": re.compile(
        r"\b(?:cannot|can't|can ?not|couldn't|won't|will not|unable to|not able to|don't|do not|doesn't|does not"
        r"|never|no way|not)\b",
        re.I,
    ),
}
# "额外补偿不在小禾的权限内": negated after the phrase.
_NEG_AFTER = {
    "zh": re.compile(rf"{CLAUSE_CHAR}{{0,4}}?(?:不在|不能|无法|不可以?|不支持|不提供|不属于|做不到|不行)"),
    "en": re.compile(r"[^.;!?]{0,12}?\b(?:is not|isn't|are not|aren't|is beyond|are beyond|not possible)\b", re.I),
}


def negated(text: str, start: int, end: int, lang: Lang) -> bool:
    """Whether the clause around [start, end) negates it: a negator shortly before, or a refusal right after."""
    before = clause_before(text, start, 12 if lang == "zh" else 40)
    return bool(_NEG[lang].search(before) or _NEG_AFTER[lang].match(text, end))


_ZERO_WIDTH_CHARS = "\u200b\u200c\u200d\u2060\ufeff"
_TABLE_END = 0x30000  # characters past the CJK planes are rare: they take the per-character loop


@functools.cache
def _single_char_table() -> tuple[dict[int, str], re.Pattern[str]]:
    """(code point -> its one-character NFKC + casefold form, for those that change), and a pattern matching the
    characters that normalise to zero or several characters (zero-width ones, ligatures, ß, ①) or lie past the
    table. Built once (~0.1 s): str.translate then does in C what the per-character loop does in Python."""
    table: dict[int, str] = {}
    other: list[str] = []
    for code in range(_TABLE_END):
        ch = chr(code)
        norm = unicodedata.normalize("NFKC", ch).casefold() if not 0xD800 <= code <= 0xDFFF else ch
        if ch in _ZERO_WIDTH_CHARS or len(norm) != 1:
            other.append(f"\\U{code:08x}")
        elif norm != ch:
            table[code] = norm
    other.append(f"\\U{_TABLE_END:08x}-\\U0010ffff")
    return table, re.compile(f"[{''.join(other)}]")


def normalise_with_map(text: str) -> tuple[str, list[int]]:
    """NFKC + casefold of each character (full-width to half-width, ＡＢＣ to abc) with, per output character, its
    source index. Zero-width characters are dropped so "b\u200ban" still reads "ban".
    """
    table, other = _single_char_table()
    if not other.search(text):  # nearly every message: one output character per input character
        return text.translate(table), list(range(len(text)))
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH_CHARS:
            continue
        norm = unicodedata.normalize("NFKC", ch).casefold()
        out.append(norm)
        index.extend([i] * len(norm))
    return "".join(out), index
