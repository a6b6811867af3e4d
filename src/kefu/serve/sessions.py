"""Server-side conversations: stored (PII-masked) history; the answer pipeline trims it to the token budget
(kefu.answer.prompt.trim). A write action waiting for the customer's confirmation is kept per conversation in
kefu_state (kefu.answer.confirm)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from kefu.serve.db import Store
from kefu.serve.tables import Conversation, Message, State, utcnow


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


@dataclass
class Exchange:
    """One answered turn to store: new user texts and the answer, both already PII-masked."""

    conversation_id: str
    user_texts: list[str]
    answer: str | None  # None: the bot stayed silent (a human has the conversation)
    version: str | None
    key_id: str | None
    user_id: str | None
    fresh: bool = False  # the server made the conversation id up for this request: no row can exist yet


_CONVS = cast(Table, Conversation.__table__)
_MESSAGES = cast(Table, Message.__table__)
# Built once (composing a statement costs more than running it): the writer thread runs these for every batch.
_EXISTING = select(_CONVS.c.id).where(_CONVS.c.id.in_(bindparam("ids", expanding=True)))
_NEW_CONV = insert(_CONVS)
_TOUCH_CONV = (
    update(_CONVS)
    .where(_CONVS.c.id == bindparam("cid"))
    .values(updated_at=bindparam("now"), model_version=func.coalesce(bindparam("version"), _CONVS.c.model_version))
)
# Each answer's id must come back in order: PostgreSQL does that in one multi-row statement; SQLite, which cannot
# order RETURNING, gets one cached single-row statement per message (~30 us each, measured), still no ORM objects.
_NEW_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)


def save_exchanges(s: Session, exchanges: list[Exchange]) -> list[int | None]:
    """Store a batch of exchanges in the caller's transaction with a few prebuilt statements; each answer's id.

    The audit writer commits many answers at once, and per-object ORM flushes were most of a request's CPU."""
    if not exchanges:
        return []
    conn, now = s.connection(), utcnow()
    _upsert_conversations(conn, exchanges, now)
    rows: list[dict[str, Any]] = []
    answer_at: list[int | None] = []
    for ex in exchanges:
        base = {"conversation_id": ex.conversation_id, "created_at": now}
        rows += [{**base, "role": "user", "author": "customer", "content": t, "model_version": None}
                 for t in ex.user_texts]  # fmt: skip
        answer_at.append(None if ex.answer is None else len(rows))
        if ex.answer is not None:
            rows.append({**base, "role": "assistant", "author": "bot", "content": ex.answer,
                         "model_version": ex.version})  # fmt: skip
    ids = conn.execute(_NEW_MESSAGES, rows).scalars().all()
    return [None if i is None else ids[i] for i in answer_at]


def _upsert_conversations(conn: Connection, exchanges: list[Exchange], now: dt.datetime) -> None:
    latest: dict[str, Exchange] = {}
    for ex in exchanges:  # several turns of one conversation in a batch: one row, the newest version
        if ex.conversation_id not in latest or ex.version:
            latest[ex.conversation_id] = ex
    maybe = [cid for cid, ex in latest.items() if not ex.fresh]
    existing = set(conn.execute(_EXISTING, {"ids": maybe}).scalars()) if maybe else set()
    new = [
        {"id": cid, "key_id": ex.key_id, "user_id": ex.user_id, "status": "bot", "model_version": ex.version,
         "created_at": now, "updated_at": now}
        for cid, ex in latest.items() if cid not in existing
    ]  # fmt: skip
    if new:
        conn.execute(_NEW_CONV, new)
    old = [{"cid": cid, "version": ex.version, "now": now} for cid, ex in latest.items() if cid in existing]
    if old:
        conn.execute(_TOUCH_CONV, old)


def _pending_key(conversation_id: str) -> str:
    # kefu_state keys are 64 characters at most; a conversation id may be longer
    return "pending:" + hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:48]


def load_pending(store: Store, conversation_id: str) -> str | None:
    """The write action this conversation's last answer asked the customer to confirm (JSON), or None."""
    return store.get_state(_pending_key(conversation_id))


def save_pending(store: Store, conversation_id: str, pending: str | None) -> None:
    """Keep (or, with None, drop) the conversation's pending write: one row per conversation in kefu_state."""
    key = _pending_key(conversation_id)
    with store.session() as s:
        row = s.get(State, key)
        if pending is None:
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(State(key=key, value=pending))
        else:
            row.value = pending
