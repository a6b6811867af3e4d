"""A sentence copied from an excerpt says what the excerpt says, and the persona's name is spelled right.

A small model copying a rule sometimes changes one number or day on the way ("周日和法定节假日仓库休息" came out as
"周六和…"): the customer reads a wrong fact in the shop's own words. When a sentence of the answer is a near-copy of
one excerpt sentence (no exact copy of any) and differs from it only in a few numerals, digits or day words, those
are put back as the excerpt has them. Anything else (a rephrasing, an added clause) is left to the other guards.
The persona's name gets the same care: "我是阿里，山岚户外的智能客服" (for 阿岚) is one character off.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

_SENTENCE = re.compile(r"[^。！？!?；;\n]+")
# Markup, spaces and citation markers are not compared; a hyphen is, where it joins numbers ("2-3 天").
_IGNORED = re.compile(r"\[\d+\]|^[\s>*+#\-•]+|[\s*_`]+")
_FACT_CHARS = re.compile(r"^[0-9０-９.:一二三四五六七八九十百千万两半零日天周]{1,3}$")
NEAR = 0.85  # similarity of a near-copy: one or two characters changed in a rule of 15-40
_SHORTEST = 10  # characters; shorter sentences are too alike by chance ("运费10元")


def _key(text: str) -> str:
    return _IGNORED.sub("", text).strip("。.，,：:")


def excerpt_sentences(excerpts: Sequence[str]) -> list[str]:
    """Every sentence of the excerpts, compared without markup, spaces or citation markers."""
    keys = (_key(m.group()) for e in excerpts for m in _SENTENCE.finditer(e))
    return [k for k in dict.fromkeys(keys) if len(k) >= _SHORTEST]


def _changes(ops: list[tuple[str, str, str, str]]) -> bool:
    """Whether all that differs (`_spans`) are a few numerals, digits or day words: substituted, or digits added to or
    lost from a number ("满 199 元" for "满 99 元")."""
    return bool(ops) and all(_fact_change(before, said, source, after) for before, said, source, after in ops)


def _fact_change(before: str, said: str, source: str, after: str) -> bool:
    if said and source:
        return bool(_FACT_CHARS.match(said) and _FACT_CHARS.match(source))
    digits = said or source
    return digits.isdigit() and len(digits) <= 2 and bool(re.search(r"\d", before[-1:] + after[:1]))


def restored(sentence: str, sources: Sequence[str]) -> str:
    """`sentence` with the numbers or day words it changed from the excerpt sentence it copies put back."""
    key = _key(sentence)
    # The copy may follow the greeting's clause ("您好，周六和…"): compare with and without it.
    for said in dict.fromkeys([key, key.partition("，")[2] or key]):
        fixed = _restore(sentence, said, sources)
        if fixed is not None:
            return fixed
    return sentence


def _restore(sentence: str, said: str, sources: Sequence[str]) -> str | None:
    """The repaired sentence, or None when `said` is no near-copy with only fact characters changed."""
    if len(said) < _SHORTEST or not sources or any(said in s for s in sources):
        return None
    matches = ((s, difflib.SequenceMatcher(None, said, s, autojunk=False)) for s in sources)
    source, best = max(matches, key=lambda sm: sm[1].ratio())  # the matcher keeps its matching blocks for below
    if best.ratio() < NEAR:
        return None
    changes = _spans(said, source, best.get_opcodes())
    if not _changes(changes):
        return None
    for before, old, new, after in changes:
        # The sentence may space what the comparison does not ("36 小时"): only the changed characters are swapped.
        spaced = [r"\s*".join(map(re.escape, part)) for part in (before, old, after)]
        found = list(re.finditer(rf"{spaced[0]}\s*({spaced[1]})\s*{spaced[2]}", sentence))
        if len(found) != 1:
            return None  # where the change sits is ambiguous: leave the sentence as written
        sentence = sentence[: found[0].start(1)] + new + sentence[found[0].end(1) :]
    return sentence


def _spans(said: str, source: str, ops: Sequence[tuple[str, int, int, int, int]]) -> list[tuple[str, str, str, str]]:
    """Each change of `ops` (context before, what was said, what the excerpt says, context after), later ones first
    so that earlier positions stay valid; two characters of context find it in the sentence unambiguously."""
    return [
        (said[max(i1 - 2, 0) : i1], said[i1:i2], source[j1:j2], said[i2 : i2 + 2])
        for tag, i1, i2, j1, j2 in reversed(ops)
        if tag != "equal"
    ]


def own_name(sentence: str, name: str) -> str:
    """A first-person "我是/我叫 X，" where X is the persona's name with one character changed, spelled right."""
    if len(name) < 2:
        return sentence
    claim = re.compile(rf"(?<=我是|我叫)[\u3400-\u9fff]{{{len(name)}}}(?=[，,。！!、\s]|$)")
    return claim.sub(
        lambda m: name if sum(a != b for a, b in zip(m.group(), name, strict=True)) == 1 else m.group(), sentence
    )
