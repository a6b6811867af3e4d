"""Server-side conversations: stored (PII-masked) history, trimmed to a token budget when building a prompt.

Budget policy: the system prompt and the newest user turn are always kept; older turns are dropped oldest first,
a user/assistant pair at a time, until the prompt fits `serve.session_token_budget`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from kefu.serve.db import Store
from kefu.serve.tables import Conversation, Message, utcnow

_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
_WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")

Counter = Callable[[str], int]


def approx_tokens(text: str) -> int:
    """Tokenizer-free estimate (one per CJK character, ~1.3 per word) used when the engine has no tokenizer."""
    return len(_CJK.findall(text)) + int(len(_WORD.findall(text)) * 1.3) + 1


def trim(system: dict[str, str], turns: list[dict[str, str]], budget: int, count: Counter) -> list[dict[str, str]]:
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


def history(store: Store, conversation_id: str, limit: int = 200) -> list[dict[str, str]]:
    with store.session() as s:
        rows = s.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id.desc()).limit(limit)
        )
        return [{"role": m.role, "content": m.content} for m in reversed(list(rows))]


def conversation_status(store: Store, conversation_id: str) -> tuple[str | None, str | None]:
    """(status, key id that owns it), or (None, None) when the conversation is new."""
    with store.session() as s:
        row = s.get(Conversation, conversation_id)
        return (row.status, row.key_id) if row else (None, None)


def ensure(store: Store, conversation_id: str, key_id: str | None, user_id: str | None) -> None:
    with store.session() as s:
        if s.get(Conversation, conversation_id) is None:
            s.add(Conversation(id=conversation_id, key_id=key_id, user_id=user_id))


def save_exchange(
    s: Session,
    conversation_id: str,
    user_texts: list[str],
    answer: str | None,
    version: str | None,
    key_id: str | None,
    user_id: str | None,
) -> int | None:
    """Store new user turns and the answer (already masked) in the caller's transaction; the answer's id."""
    conv = s.get(Conversation, conversation_id)
    if conv is None:
        conv = Conversation(id=conversation_id, key_id=key_id, user_id=user_id)
        s.add(conv)
        s.flush()
    conv.updated_at = utcnow()
    conv.model_version = version or conv.model_version
    for text in user_texts:
        s.add(Message(conversation_id=conversation_id, role="user", author="customer", content=text))
    if answer is None:
        return None
    msg = Message(
        conversation_id=conversation_id, role="assistant", author="bot", content=answer, model_version=version
    )
    s.add(msg)
    s.flush()
    return msg.id
