"""Append-only, hash-chained audit log: every admin action and every answer.

Row n stores hash_n = sha256(n | ts | actor | action | payload | hash_{n-1}); ids are contiguous and the head
(last id and hash) is also kept in kefu_state. An edited row breaks its own hash, a deleted row leaves a gap or a
broken link, and a deleted tail no longer matches the head: `kefu audit verify` finds all three.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from kefu.serve.db import Store
from kefu.serve.sessions import Exchange, save_exchanges
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


_STATE = cast(Table, State.__table__)
_EVENTS = cast(Table, AuditEvent.__table__)
# Built once: composing statements per call cost more than executing them. The no-op UPDATE takes the write lock
# (SQLite) or the row lock (PostgreSQL) and reads the head in one statement, so concurrent appenders, even in other
# processes, chain one after another. The migration creates the head row.
_LOCK_HEAD = update(_STATE).where(_STATE.c.key == HEAD).values(value=_STATE.c.value).returning(_STATE.c.value)
_SET_HEAD = update(_STATE).where(_STATE.c.key == HEAD).values(value=bindparam("head"))
_INSERT = insert(_EVENTS)


def append(s: Session, events: list[Event]) -> int:
    """Chain `events` onto the log inside the caller's transaction; returns the last id."""
    conn = s.connection()
    head = conn.execute(_LOCK_HEAD).scalar() or f"0:{GENESIS}"
    last_id_s, prev = head.split(":", 1)
    seq = int(last_id_s)
    rows = []
    for ev in events:
        seq += 1
        ts = dt.datetime.now(dt.timezone.utc).isoformat()
        body = canonical(ev.payload)
        h = row_hash(seq, ts, ev.actor, ev.action, body, prev)
        rows.append({"id": seq, "ts": ts, "actor": ev.actor, "action": ev.action, "payload": body, "prev_hash": prev,
                     "hash": h})  # fmt: skip
        prev = h
    conn.execute(_INSERT, rows)
    conn.execute(_SET_HEAD, {"head": f"{seq}:{prev}"})
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


@dataclass
class AnswerJob:
    """An answered turn: the writer stores the exchanges of a whole batch together, then asks each job for its
    audit events, which name the stored answer's id."""

    exchange: Exchange
    events: Callable[[int | None], list[Event]]


Job = Callable[[Session], list[Event]] | AnswerJob
Done = Callable[[BaseException | None], None]


class AuditWriter:
    """One background thread that commits answers: each job stores its rows and returns its audit events, and a
    whole batch of jobs goes into ONE transaction with the chain appended (one fsync for many answers), so
    requests never hold a thread while waiting on the disk."""

    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store, self.max_batch = store, max_batch
        self._q: queue.Queue[tuple[Job, Done | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kefu-audit", daemon=True)
        self._thread.start()

    def submit(self, actor: str, action: str, payload: dict[str, Any]) -> None:
        """Append one event, fire and forget."""
        self.submit_job(lambda _s: [Event(actor, action, payload)])

    def submit_job(self, job: Job, done: Done | None = None) -> None:
        self._q.put((job, done))

    async def run(self, job: Job) -> None:
        """Commit `job` (with its audit events) and wait for the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(err: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, fut, err)

        self.submit_job(job, done)
        await fut

    def _drain(self, first: tuple[Job, Done | None]) -> tuple[list[tuple[Job, Done | None]], bool]:
        items, stop = [first], False
        while len(items) < self.max_batch:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            items.append(item)
        return items, stop

    def _commit(self, items: list[tuple[Job, Done | None]]) -> None:
        with self.store.session() as s:
            answers = [job.exchange for job, _ in items if isinstance(job, AnswerJob)]
            ids = iter(save_exchanges(s, answers))
            events: list[Event] = []
            for job, _ in items:
                events += job.events(next(ids)) if isinstance(job, AnswerJob) else job(s)
            if events:
                append(s, events)

    def _write(self, items: list[tuple[Job, Done | None]], attempts: int = 4) -> None:
        error: BaseException | None = None
        for attempt in range(attempts):
            try:
                self._commit(items)
                error = None
                break
            except Exception as e:
                error = e
                if len(items) > 1:  # isolate the bad job: the others must not be lost with it
                    for item in items:
                        self._write([item], attempts)
                    return
                log.warning("audit commit failed (attempt %d): %r", attempt + 1, e)
                time.sleep(0.05 * 2**attempt)
        if error is not None:
            log.error("audit job dropped after %d attempts: %r", attempts, error)
        for _, done in items:
            if done is not None:
                done(error)

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                self._q.task_done()
                return
            items, stop = self._drain(first)
            self._write(items)
            for _ in range(len(items) + stop):
                self._q.task_done()
            if stop:
                return

    def flush(self) -> None:
        """Block until every submitted job is committed."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)
