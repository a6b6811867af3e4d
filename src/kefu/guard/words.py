"""Banned words: find and redact, case-insensitive, with full-width and half-width forms treated alike."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from kefu.guard.findings import Finding, normalise_with_map

# Between the characters of a Chinese banned word people slip spaces or symbols to dodge filters: "傻 逼", "傻*逼".
_FILLER = r"[\s*._\-·|/\\]{0,2}"


@lru_cache(maxsize=64)
def _pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for word in sorted({normalise_with_map(w.strip())[0] for w in words if w.strip()}, key=len, reverse=True):
        if word.isascii():
            # Whole words only, so "ass" does not fire inside "class" (digits may follow: "ChatGPT4").
            parts.append(rf"(?<![a-z]){re.escape(word)}(?![a-z])")
        else:
            parts.append(_FILLER.join(re.escape(ch) for ch in word))
    return re.compile("|".join(parts)) if parts else None


def find_banned(text: str, words: Iterable[str]) -> list[Finding]:
    """Each occurrence of a banned word or phrase in `text` (rule 'banned_word'), offsets into the original text."""
    pattern = _pattern(tuple(words))
    if pattern is None or not text:
        return []
    norm, index = normalise_with_map(text)
    found = []
    for m in pattern.finditer(norm):
        start, end = index[m.start()], index[m.end() - 1] + 1
        found.append(Finding("banned_word", start, end, text[start:end], detail=m.group()))
    return found


def contains_banned(text: str, words: Iterable[str]) -> bool:
    return bool(find_banned(text, words))


def redact_banned(text: str, words: Iterable[str], mask_char: str = "*") -> str:
    """`text` with every banned occurrence replaced by `mask_char` repeated to the same length."""
    out, pos = [], 0
    for f in find_banned(text, words):
        out += [text[pos : f.start], mask_char * (f.end - f.start)]
        pos = f.end
    out.append(text[pos:])
    return "".join(out)
