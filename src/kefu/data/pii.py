"""PII masking for Chinese and English shop text: pure functions, no I/O.

`mask` replaces each piece of personal data that kefu.data.pii_detect.find_pii finds with a placeholder ('[PHONE]',
...); `unmasking` maps the placeholders back to the customer's values; `mask_conversation` and `mask_stream` apply
`mask` to training data and to a pipe. The detectors (and their validators) are imported from here as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import IO, Any

from kefu.config import PIIConfig
from kefu.data.pii_detect import (
    ALL_KINDS,
    Kind,
    Span,
    find_pii,
    id_check_char,
    luhn_ok,
    valid_card,
    valid_id15,
    valid_id18,
)
from kefu.data.schema import Conversation

# Callers import the detectors from here too (kefu.data.pii is the module's public face).
__all__ = [
    "ALL_KINDS",
    "DEFAULT_PLACEHOLDERS",
    "Kind",
    "Span",
    "find_pii",
    "id_check_char",
    "luhn_ok",
    "map_strings",
    "mask",
    "mask_conversation",
    "mask_stream",
    "unmasking",
    "valid_card",
    "valid_id15",
    "valid_id18",
]

DEFAULT_PLACEHOLDERS: dict[Kind, str] = {
    "phone": "[PHONE]",
    "id_card": "[ID_CARD]",
    "bank_card": "[BANK_CARD]",
    "email": "[EMAIL]",
    "address": "[ADDRESS]",
    "name": "[NAME]",
}


def mask(text: str, cfg: PIIConfig | None = None) -> str:
    """`text` with each piece of personal data of cfg.kinds replaced by its placeholder ('[PHONE]', ...).

    cfg.enabled is not consulted: the caller decides whether masking applies (data prep, serving and logging each
    have their own switch).
    """
    cfg = cfg or PIIConfig()
    holders: dict[Kind, str] = {**DEFAULT_PLACEHOLDERS, **cfg.placeholders}
    out: list[str] = []
    pos = 0
    for span in find_pii(text, cfg.kinds):
        out += [text[pos : span.start], holders[span.kind]]
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def unmasking(texts: Iterable[str], cfg: PIIConfig | None = None) -> dict[str, str]:
    """Placeholder -> the newest value of its kind in `texts`: what a placeholder in text masked from them stood for."""
    cfg = cfg or PIIConfig()
    holders: dict[Kind, str] = {**DEFAULT_PLACEHOLDERS, **cfg.placeholders}
    return {holders[s.kind]: s.value for text in texts for s in find_pii(text, cfg.kinds)}


def mask_conversation(conv: Conversation, cfg: PIIConfig | None = None) -> Conversation:
    """A copy of `conv` with the system prompt, every turn, every reasoning and every tool call's string arguments
    masked; meta is left as it is."""
    masker = functools.partial(mask, cfg=cfg)
    turns = [
        t.model_copy(
            update={
                "content": mask(t.content, cfg),
                "reasoning": t.reasoning and mask(t.reasoning, cfg),
                # The same placeholder as in the customer's turn, so a call learns to copy what the customer said
                # (an address masked in the message but kept in the call would teach the model to invent one).
                "tool_calls": [
                    c.model_copy(update={"arguments": map_strings(c.arguments, masker)}) for c in t.tool_calls
                ],
            }
        )
        for t in conv.turns
    ]
    return conv.model_copy(update={"system": conv.system and mask(conv.system, cfg), "turns": turns})


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to every string in it, through dicts and lists (a tool call's arguments)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    return value


def mask_stream(inp: Iterable[str], out: IO[str], cfg: PIIConfig | None = None) -> int:
    """Mask line by line, keeping each line's ending and flushing after each, so it works inside a pipe.

    Returns the number of lines written.
    """
    n = 0
    for line in inp:
        body = line.rstrip("\r\n")
        out.write(mask(body, cfg) + line[len(body) :])
        out.flush()
        n += 1
    return n
