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


def _changes(said: str, source: str) -> bool:
    """Whether all that differs are a few numerals, digits or day words: substituted, or digits added to or lost
    from a number ("满 199 元" for "满 99 元")."""
    ops = difflib.SequenceMatcher(None, said, source, autojunk=False).get_opcodes()
    changed = [(tag, said[i1:i2], source[j1:j2], said[max(i1 - 1, 0) : i2 + 1]) for tag, i1, i2, j1, j2 in ops]
    changed = [c for c in changed if c[0] != "equal"]
    return bool(changed) and all(_fact_change(*c) for c in changed)


def _fact_change(tag: str, said: str, source: str, around: str) -> bool:
    if tag == "replace":
        return bool(_FACT_CHARS.match(said) and _FACT_CHARS.match(source))
    digits = said or source
    return digits.isdigit() and len(digits) <= 2 and bool(re.search(r"\d", around.replace(said, "", 1)))


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
    best = max(sources, key=lambda s: difflib.SequenceMatcher(None, said, s, autojunk=False).ratio())
    if difflib.SequenceMatcher(None, said, best, autojunk=False).ratio() < NEAR or not _changes(said, best):
        return None
    for before, old, new, after in _spans(said, best):
        # The sentence may space what the comparison does not ("36 小时"): only the changed characters are swapped.
        spaced = [r"\s*".join(map(re.escape, part)) for part in (before, old, after)]
        found = list(re.finditer(rf"{spaced[0]}\s*({spaced[1]})\s*{spaced[2]}", sentence))
        if len(found) != 1:
            return None  # where the change sits is ambiguous: leave the sentence as written
        sentence = sentence[: found[0].start(1)] + new + sentence[found[0].end(1) :]
    return sentence


def _spans(said: str, source: str) -> list[tuple[str, str, str, str]]:
    """Each change (context before, what was said, what the excerpt says, context after), later ones first so
    that earlier positions stay valid; two characters of context find it in the sentence unambiguously."""
    ops = difflib.SequenceMatcher(None, said, source, autojunk=False).get_opcodes()
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
