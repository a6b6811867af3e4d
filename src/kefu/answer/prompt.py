"""The prompt an engine gets: the persona's system prompt, the retrieved excerpts, and the newest turns that fit.

The persona's prompt has one source, kefu.data.persona_prompt.system_prompt (training, eval, serving and chat all
use it); excerpts are appended the same way retrieval-aware training composes them (kefu.rag.context.build_rag_sft).
Budget policy: the system prompt and the newest user turn are always kept; older turns are dropped oldest first
until the prompt fits the token budget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kefu.data.persona import no_match_note, system_text  # the one composition, shared with training data

__all__ = ["approx_tokens", "last_user", "no_match_note", "system_text", "trim"]

Counter = Callable[[str], int]
Messages = list[dict[str, Any]]  # OpenAI role/content dicts (assistant `tool_calls`, tool `tool_call_id` too)

_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
_WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


def approx_tokens(text: str) -> int:
    """Tokenizer-free estimate (one per CJK character, ~1.3 per word) used when the engine has no tokenizer."""
    return len(_CJK.findall(text)) + int(len(_WORD.findall(text)) * 1.3) + 1


def last_user(turns: Messages) -> int:
    """Index of the newest customer message (tool turns may follow it); 0 when there is none."""
    return next((i for i in range(len(turns) - 1, -1, -1) if turns[i]["role"] == "user"), 0)


def _cost(msg: dict[str, Any], count: Counter) -> int:
    calls = msg.get("tool_calls")
    return count(msg["content"] or "") + (count(json.dumps(calls, ensure_ascii=False)) if calls else 0) + 4


def trim(system: dict[str, Any], turns: Messages, budget: int, count: Counter) -> Messages:
    """system + the newest turns that fit `budget` tokens; the newest customer message and what follows it (tool
    calls and results) are kept even if over."""
    asked = last_user(turns)
    kept = list(reversed(turns[asked:]))
    used = count(system["content"]) + sum(_cost(m, count) for m in kept) + 4
    for msg in reversed(turns[:asked]):
        cost = _cost(msg, count)
        if used + cost > budget:
            break
        kept.append(msg)
        used += cost
    kept.reverse()
    while kept[0]["role"] != "user" and len(kept) > 1:  # a history starts with the customer, never mid tool call
        kept.pop(0)
    return [system, *kept]
