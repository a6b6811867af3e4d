"""The prompt an engine gets: the persona's system prompt, the retrieved excerpts, and the newest turns that fit.

The persona's prompt has one source, kefu.data.persona.system_prompt (training, eval, serving and chat all use it);
excerpts are appended the same way retrieval-aware training composes them (kefu.rag.context.build_rag_sft).
Budget policy: the system prompt and the newest user turn are always kept; older turns are dropped oldest first
until the prompt fits the token budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kefu.data.persona import no_match_note, system_text  # the one composition, shared with training data

__all__ = ["approx_tokens", "no_match_note", "system_text", "trim"]

Counter = Callable[[str], int]
Messages = list[dict[str, str]]

_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
_WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


def approx_tokens(text: str) -> int:
    """Tokenizer-free estimate (one per CJK character, ~1.3 per word) used when the engine has no tokenizer."""
    return len(_CJK.findall(text)) + int(len(_WORD.findall(text)) * 1.3) + 1


def trim(system: dict[str, str], turns: Messages, budget: int, count: Counter) -> Messages:
    """system + the newest turns that fit `budget` tokens; the last turn is kept even if it alone is over."""
    used = count(system["content"]) + count(turns[-1]["content"]) + 8
    kept = [turns[-1]]
    for msg in reversed(turns[:-1]):
        cost = count(msg["content"]) + 4
        if used + cost > budget:
            break
        kept.append(msg)
        used += cost
    kept.reverse()
    while kept[0]["role"] == "assistant" and len(kept) > 1:  # a history must start with the customer
        kept.pop(0)
    return [system, *kept]
