from __future__ import annotations

import random
import unicodedata

from kefu.guard.findings import normalise_with_map


def _per_character(text: str) -> tuple[str, list[int]]:
    """The definition: each character NFKC-normalised and casefolded on its own, zero-width ones dropped."""
    out, index = [], []
    for i, ch in enumerate(text):
        if ch in "\u200b\u200c\u200d\u2060\ufeff":
            continue
        norm = unicodedata.normalize("NFKC", ch).casefold()
        out.append(norm)
        index += [i] * len(norm)
    return "".join(out), index


def test_every_single_character_matches_the_definition() -> None:
    chars = (chr(c) for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF)
    assert [c for c in chars if normalise_with_map(c) != _per_character(c)] == []


def test_mixed_texts_match_the_definition() -> None:
    """Texts that take the fast path and texts that don't: full-width, ligatures, combining marks, Hangul jamo,
    characters that casefold longer (ß, ﬁ), zero-width characters."""
    special = ["Ａ", "ｂ", "１", "ﬁ", "ß", "İ", "e\u0301", "\u0301", "\u1100", "\u1161", "\u11a8", "가", "\u200b"]
    special += ["\ufeff", "①", "㎏", "Ⅻ", "Σ", "ς"]
    pool = [*"退货运费订单ABCabc123，。！? ", *special]
    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))
        assert normalise_with_map(text) == _per_character(text), repr(text)
