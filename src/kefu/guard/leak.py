"""An answer that reproduces the system prompt: character n-grams shared with its instruction text.

The persona's facts (name, shop, hours, how to reach a human, what it can and cannot do) are also in the prompt and
belong in answers, so they are cut out first: what remains is the instruction scaffolding ("回答要求：以…开头；不使用
表情符号…"), which no customer answer needs to repeat.
"""

from __future__ import annotations

import re

from kefu.config import PersonaConfig

N = 8  # characters per n-gram (of letters, digits and CJK only)
LEAK_CHARS = 16  # an answer is a leak once this many of its characters lie in n-grams of the scaffolding
_NOISE = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    return _NOISE.sub("", text).casefold()


def scaffold_ngrams(system_prompt: str, persona: PersonaConfig) -> frozenset[str]:
    """The n-grams of the system prompt's instruction text, the persona's field values cut out."""
    facts = [persona.name, persona.name_en, persona.shop, persona.shop_en, persona.company, persona.hours]
    facts += [persona.handoff, persona.hours_en, persona.handoff_en, persona.greeting, persona.sign_off]
    facts += list(persona.can_do) + list(persona.cannot_do) + list(persona.forbidden_phrases)
    text = system_prompt
    for fact in sorted((f for f in facts if f.strip()), key=len, reverse=True):
        text = text.replace(fact, "\n")
    grams: set[str] = set()
    for piece in text.split("\n"):
        s = _squash(piece)
        grams.update(s[i : i + N] for i in range(len(s) - N + 1))
    return frozenset(grams)


def covered(text: str, grams: frozenset[str]) -> int:
    """How many characters of `text` (letters, digits, CJK) lie inside an n-gram of `grams`."""
    s = _squash(text)
    marked = bytearray(len(s))
    for i in range(len(s) - N + 1):
        if s[i : i + N] in grams:
            marked[i : i + N] = b"\x01" * N
    return sum(marked)
