"""What every guard rule reports, and the text helpers the rules share."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One rule hit: which rule, the [start, end) span in the checked text, the matched text and optional detail."""

    rule: str
    start: int
    end: int
    text: str
    detail: str = ""


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
