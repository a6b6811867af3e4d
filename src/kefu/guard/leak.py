"""An answer that reproduces the system prompt: character n-grams shared with its instruction text.

The persona's facts (name, shop, hours, how to reach a human, what it can and cannot do) are also in the prompt and
belong in answers, so only n-grams made mostly of the rest count: the instruction scaffolding ("回答要求：以…开头；
不使用表情符号…"), which no customer answer needs to repeat. An n-gram may run across a fact ("以“您好”开头"), so a
prompt quoted with its facts in place is still found.
"""

from __future__ import annotations

import re

from kefu.config import PersonaConfig
from kefu.guard.findings import normalise_with_map

N = 8  # characters per n-gram (of letters, digits and CJK only)
OWN = 6  # of which at least this many are scaffolding, not a persona fact
LEAK_CHARS = 16  # an answer is a leak once this many of its characters lie in n-grams of the scaffolding
_NOISE = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    """Letters, digits and CJK only, NFKC and casefolded (as the checked answer is)."""
    return _NOISE.sub("", normalise_with_map(text)[0])


def scaffold_ngrams(system_prompt: str, persona: PersonaConfig) -> frozenset[str]:
    """The n-grams of the system prompt with at least OWN characters of instruction text (not persona facts)."""
    facts = [persona.name, persona.name_en, persona.shop, persona.shop_en, persona.company, persona.hours]
    facts += [persona.handoff, persona.hours_en, persona.handoff_en, persona.greeting, persona.sign_off]
    facts += list(persona.can_do) + list(persona.cannot_do) + list(persona.forbidden_phrases)
    facts = sorted({f for f in facts if f.strip()}, key=len, reverse=True)
    pieces = re.split(f"({'|'.join(map(re.escape, facts))})", system_prompt) if facts else [system_prompt]
    chars: list[str] = []
    is_fact: list[bool] = []
    for k, piece in enumerate(pieces):  # re.split with one group: facts sit at the odd places
        squashed = _squash(piece)
        chars.append(squashed)
        is_fact += [k % 2 == 1] * len(squashed)
    s = "".join(chars)
    grams = {s[i : i + N] for i in range(len(s) - N + 1) if N - sum(is_fact[i : i + N]) >= OWN}
    return frozenset(grams)


def covered(text: str, grams: frozenset[str], before: str = "") -> tuple[int, str]:
    """How many characters of `text` (letters, digits, CJK) lie inside an n-gram of `grams`, n-grams that start in
    `before` (the tail of the text before it, as returned by the previous call) included; and the new tail."""
    carry = before[-(N - 1) :] if N > 1 else ""
    s = carry + _squash(text)
    starts = [i for i in range(len(s) - N + 1) if s[i : i + N] in grams]
    if not starts:
        return 0, s[-(N - 1) :]
    marked = bytearray(len(s))
    for i in starts:
        marked[i : i + N] = b"\x01" * N
    return sum(marked[len(carry) :]), s[-(N - 1) :]
