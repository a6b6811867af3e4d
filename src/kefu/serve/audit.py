"""Append-only, hash-chained audit log: every admin action and every answer.

Row n stores hash_n = sha256(n | ts | actor | action | payload | hash_{n-1}); ids are contiguous and the head
(last id and hash) is also kept in kefu_state. An edited row breaks its own hash, a deleted row leaves a gap or a
broken link, and a deleted tail no longer matches the head: `kefu audit verify` finds all three.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kefu.serve.db import Store
from kefu.serve.tables import AuditEvent, State

log = logging.getLogger("kefu.serve.audit")
GENESIS = "0" * 64
HEAD = "audit_head"


def canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def row_hash(seq: int, ts: str, actor: str, action: str, payload: str, prev: str) -> str:
    text = "\x1f".join([str(seq), ts, actor, action, payload, prev])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Event:
    actor: str
    action: str
    payload: dict[str, Any]


def append(s: Session, events: list[Event]) -> int:
    """Chain `events` onto the log inside the caller's transaction; returns the last id."""
    # UPDATE first: it takes the write lock (SQLite) or the row lock (PostgreSQL) before the head is read,
    # so concurrent appenders, even in other processes, chain one after another.
    s.execute(update(State).where(State.key == HEAD).values(value=State.value))
    head = s.scalar(select(State.value).where(State.key == HEAD)) or f"0:{GENESIS}"
    last_id_s, prev = head.split(":", 1)
    seq = int(last_id_s)
    for ev in events:
        seq += 1
        ts = dt.datetime.now(dt.timezone.utc).isoformat()
        body = canonical(ev.payload)
        h = row_hash(seq, ts, ev.actor, ev.action, body, prev)
        s.add(AuditEvent(id=seq, ts=ts, actor=ev.actor, action=ev.action, payload=body, prev_hash=prev, hash=h))
        prev = h
    s.flush()
    s.execute(update(State).where(State.key == HEAD).values(value=f"{seq}:{prev}"))
    return seq


def record(store: Store, actor: str, action: str, payload: dict[str, Any]) -> int:
    """Append one event synchronously (admin actions: the caller learns it was recorded)."""
    with store.session() as s:
        return append(s, [Event(actor, action, payload)])


@dataclass
class Verdict:
    ok: bool
    rows: int
    bad_id: int | None = None
    problem: str = ""
    bad_row: dict[str, Any] | None = None


def _check_row(r: AuditEvent, expect_id: int, prev: str) -> str:
    if r.id != expect_id:
        return f"row {expect_id} is missing (next row is {r.id}): deleted"
    if r.prev_hash != prev:
        return "prev_hash does not link to the previous row: a row before it was edited or deleted"
    if row_hash(r.id, r.ts, r.actor, r.action, r.payload, r.prev_hash) != r.hash:
        return "hash does not match the row's contents: edited"
    return ""


def verify(store: Store, batch: int = 5000) -> Verdict:
    """Walk the whole chain; the first bad row and what is wrong with it."""
    prev, expect, n = GENESIS, 1, 0
    with store.session() as s:
        while True:
            rows = s.scalars(select(AuditEvent).where(AuditEvent.id >= expect).order_by(AuditEvent.id).limit(batch))
            chunk = list(rows)
            for r in chunk:
                problem = _check_row(r, expect, prev)
                if problem:
                    return Verdict(False, n, min(r.id, expect), problem, _as_dict(r))
                prev, expect, n = r.hash, expect + 1, n + 1
            if len(chunk) < batch:
                break
        head = s.scalar(select(State.value).where(State.key == HEAD)) or f"0:{GENESIS}"
    if head != f"{n}:{prev}":
        return Verdict(False, n, n + 1, f"the chain head says {head.split(':')[0]} rows but {n} remain: tail deleted")
    return Verdict(True, n)


def _as_dict(r: AuditEvent) -> dict[str, Any]:
    return {"id": r.id, "ts": r.ts, "actor": r.actor, "action": r.action, "payload": r.payload, "hash": r.hash}


class AuditWriter:
    """Appends answer events from a background thread in small batches, so a request never waits on fsync."""

    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store, self.max_batch = store, max_batch
        self._q: queue.Queue[Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kefu-audit", daemon=True)
        self._thread.start()

    def submit(self, actor: str, action: str, payload: dict[str, Any]) -> None:
        self._q.put(Event(actor, action, payload))

    def _drain(self, first: Event) -> tuple[list[Event], bool]:
        events, stop = [first], False
        while len(events) < self.max_batch:
            try:
                ev = self._q.get_nowait()
            except queue.Empty:
                break
            if ev is None:
                stop = True
                break
            events.append(ev)
        return events, stop

    def _write(self, events: list[Event]) -> None:
        for attempt in range(5):
            try:
                with self.store.session() as s:
                    append(s, events)
                return
            except Exception:
                log.exception("audit append failed (attempt %d)", attempt + 1)
                time.sleep(0.05 * 2**attempt)
        log.error("dropped %d audit events after 5 failed attempts", len(events))

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                self._q.task_done()
                return
            events, stop = self._drain(first)
            self._write(events)
            for _ in range(len(events) + stop):
                self._q.task_done()
            if stop:
                return

    def flush(self) -> None:
        """Block until every submitted event is committed."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)
