"""Answers keep to the item asked about.

Policy pages often list one rule per product or region ("- 帐篷、背包：保修 2 年" / "- 登山杖、头灯等小件：保修 6
个月"). A small model asked "登山杖保修多久" copies the whole list: the customer has to find their line, and the
other lines' numbers read as contradictions of the one that applies. When the question names the subject of one
or more items of such a list and not the others, a sentence that restates another item is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# A list line of an excerpt: "- 冲锋衣、软壳：防水压胶…", "* Tents and backpacks: 2 years …" (quoted or not).
# Bulleted lines only: a numbered list is as often a procedure ("1. 登录账号：… 2. 进入订单：…"), whose steps all
# belong in an answer about one of them. The subject is a name, not a clause ("留言，人工客服在次日 10:00 前回复" has
# no subject), and a clock's colon is no separator.
_ITEM = re.compile(r"^\s*(?:>\s*)?[-*+•]\s*(?:\*\*)?([^：:，,。.\n]{1,24}?)(?:\*\*)?\s*(?<!\d)[：:]\s*\S", re.MULTILINE)
_SPLIT = re.compile(r"[、，,/／]|\s+(?:and|or)\s+|和|及|与|或")
# What a subject's last term trails off with: "头灯等小件" is asked about as "头灯".
_TRAIL = re.compile(r"(?:等.*|之类.*|类|\s*etc\.?)$")
_CJK_PAIR = re.compile(r"[\u3400-\u9fff]{2}")
_NOISE = re.compile(r"[\s*_`>\-–—•]+")


@dataclass(frozen=True)
class Item:
    subject: str  # as the list writes it, "登山杖、头灯等小件"
    terms: tuple[str, ...]  # what a question names it by, casefolded: ("登山杖", "头灯")
    group: int  # items of one list share it
    distinct: frozenset[str] = frozenset()  # fragments of its subject no sibling's subject shares (_fragments)


def _terms(subject: str) -> tuple[str, ...]:
    parts = (_TRAIL.sub("", p).strip().casefold() for p in _SPLIT.split(subject))
    return tuple(p for p in parts if len(p) >= 2)


def list_items(excerpts: Sequence[str]) -> list[Item]:
    """The "subject: rule" lines of lists of two or more items in the excerpts."""
    items: list[Item] = []
    for group, text in enumerate(excerpts):
        found = [(m.group(1).strip(), _terms(m.group(1))) for m in _ITEM.finditer(text)]
        found = [(subject, terms) for subject, terms in found if terms]
        if len(found) < 2:
            continue
        pieces = [_fragments(subject) for subject, _ in found]
        for i, (subject, terms) in enumerate(found):
            shared = set().union(*(p for j, p in enumerate(pieces) if j != i))
            items.append(Item(subject, terms, group, frozenset(pieces[i] - shared)))
    return items


def _fragments(subject: str) -> set[str]:
    """Two-character pieces of a Chinese subject and the longer words of an English one."""
    text = subject.casefold()
    pieces = {w.rstrip("s") for w in re.findall(r"[a-z]{4,}", text)}
    return pieces | {text[i : i + 2] for i in range(len(text) - 1) if _CJK_PAIR.fullmatch(text[i : i + 2])}


def _names(question: str, item: Item) -> bool:
    """The question names the item: one of its terms, or a fragment of its subject that no sibling shares (a
    customer asking "客服热线和人工几点" names "在线人工客服" too; when in doubt, nothing is dropped)."""
    q = question.casefold()
    if any(t in q or (t.endswith("s") and t[:-1] in q) for t in item.terms):
        return True
    return any(f in q for f in item.distinct)


def _key(text: str) -> str:
    return _NOISE.sub("", text).casefold()


def off_item(sentence: str, question: str, items: Sequence[Item]) -> bool:
    """Whether `sentence` restates a list item the question does not ask about, while it names another item of
    the same list (so the customer asked about one line of it)."""
    said = _key(sentence)
    for item in items:
        if _key(item.subject) not in said or _names(question, item):
            continue
        siblings = (i for i in items if i.group == item.group and i is not item)
        if any(_names(question, s) and _key(s.subject) not in said for s in siblings):
            return True
    return False
