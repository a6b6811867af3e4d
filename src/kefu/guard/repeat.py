"""Degenerate output: a model looping "您好，您好，您好…" or "祝您生活愉快！祝您生活愉快！" until the token limit.

Every check looks at a fixed unit of the text (a finished clause, a finished sentence, or a prefix of a fixed length
of an unfinished one), so the verdict does not depend on how the stream was chunked.
"""

from __future__ import annotations

import re
from collections import Counter

CLAUSE_END = re.compile(r"[，,、：:]")
SHORTEST_RUNAWAY = 40  # a finished sentence shorter than this ends its own loop; the sentence check sees a repeat
PROBE_EVERY = 80  # characters of an unfinished sentence between two looks for a loop without punctuation
_LOOP = re.compile(r"(.{2,40}?)\1{4,}|([^\W_])\2{15,}", re.S)
_NOISE = re.compile(r"[\W_]+")
CITATION = re.compile(r"\[\d+\]")  # an excerpt marker, "[2]"
CLAUSE_REPEATS = 3  # the same clause this many times in a row
SHORT = 4  # a repeated sentence shorter than this (好的。) may occur twice; a third time is a loop


def key(text: str) -> str:
    """What two pieces of text must share to count as the same: letters, digits and CJK, casefolded; citation
    markers left out ("最长 30 天[1]。最长 30 天[2]。" is one rule said twice)."""
    return _NOISE.sub("", CITATION.sub("", text)).casefold()


class RepeatWatch:
    """Fed the sentences and the clauses of one answer in order; says when it has started to loop."""

    def __init__(self, greeting: str = "") -> None:
        # The answer's opening greeting is left out of its first sentence's key: "您好，租期最长 30 天。租期最长
        # 30 天[1]。" says one rule twice.
        self._greeting = key(greeting)
        self.sentences: Counter[str] = Counter()
        self._last_clause = ""
        self._run = 0

    def clause(self, text: str) -> bool:
        """A finished clause of the current sentence: True on the CLAUSE_REPEATS-th identical one in a row."""
        k = key(text)
        if not k:
            return False
        self._run = self._run + 1 if k == self._last_clause else 1
        self._last_clause = k
        return self._run >= CLAUSE_REPEATS

    def _key(self, text: str) -> str:
        k = key(text)
        g = self._greeting
        return k[len(g) :] if g and k.startswith(g) and len(k) > len(g) else k

    def sentence_repeats(self, text: str) -> bool:
        """Whether this finished sentence repeats an earlier one of the answer."""
        k = self._key(text)
        seen = self.sentences[k]
        return bool(k) and seen >= (1 if len(k) >= SHORT else 2)

    def accept(self, text: str) -> None:
        """A sentence was released: remember it, and start clause runs afresh."""
        self.sentences[self._key(text)] += 1
        self._last_clause, self._run = "", 0


def runaway(prefix: str) -> bool:
    """A unit repeated five times in a row (or one letter sixteen times) in a sentence with no end in sight."""
    # Such a loop repeats some pair of characters at least five times (str.count counts without overlap, so a
    # run of 16 one-letter repeats gives 8); most sentences have no such pair, and skip the costlier regex.
    if not any(prefix.count(prefix[i : i + 2]) >= 5 for i in range(len(prefix) - 1)):
        return False
    return _LOOP.search(prefix) is not None
