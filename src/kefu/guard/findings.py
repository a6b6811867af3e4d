"""What every guard rule reports, and the text helpers the rules share."""

from __future__ import annotations

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


def normalise_with_map(text: str) -> tuple[str, list[int]]:
    """NFKC + casefold (full-width to half-width, ＡＢＣ to abc) with, per output character, its source index.

    Zero-width characters are dropped so "b\u200ban" still reads "ban".
    """
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch in "\u200b\u200c\u200d\u2060\ufeff":
            continue
        norm = unicodedata.normalize("NFKC", ch).casefold()
        out.append(norm)
        index.extend([i] * len(norm))
    return "".join(out), index
