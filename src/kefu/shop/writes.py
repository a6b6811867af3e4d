"""The reference backend's write routes: cancel an unshipped order, change its address, open a return.

Each is scoped by the customer like the reads (404 for an order that is not theirs), checks the shop's rule in the
same transaction as the write, and answers 409 with a reason in both languages when the rule says no, e.g.
`{"detail": {"reason": "订单已发货，无法取消", "reason_en": "the order has already shipped"}}`. Every write is
one row in `changes`, the backend's own record, which the actions eval reads to judge a task's final state.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field


class AddressChange(BaseModel):
    address: str = Field(min_length=4, max_length=120)


class ReturnRequest(BaseModel):
    reason: str = Field(default="客户申请退货", max_length=200)


_REFUSALS = {
    "shipped": ("订单已发货，无法再修改或取消", "the order has already shipped"),
    "cancelled": ("订单已取消", "the order is already cancelled"),
    "not_delivered": ("订单尚未签收，签收后才能申请退货", "the order has not been delivered yet"),
    "has_return": ("这个订单已经有一个退货申请", "the order already has a return"),
}


def _refuse(why: str) -> HTTPException:
    zh, en = _REFUSALS[why]
    return HTTPException(409, {"reason": zh, "reason_en": en, "code": why})


@contextmanager
def _tx(db: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction; BEGIN IMMEDIATE so the rule check and the write see the same order."""
    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    con.row_factory = sqlite3.Row
    try:
        con.execute("BEGIN IMMEDIATE")
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _owned(con: sqlite3.Connection, cid: str, oid: str) -> sqlite3.Row:
    row = con.execute("SELECT * FROM orders WHERE id = ? AND customer_id = ?", (oid, cid)).fetchone()
    if row is None:
        raise HTTPException(404, "order not found")
    return row


def _unshipped(row: sqlite3.Row) -> None:
    if row["status"] == "cancelled":
        raise _refuse("cancelled")
    if row["status"] != "paid":
        raise _refuse("shipped")


def _log(con: sqlite3.Connection, now: dt.datetime, cid: str, oid: str, kind: str, detail: dict[str, Any]) -> None:
    con.execute("INSERT INTO changes (time, customer_id, order_id, kind, detail) VALUES (?,?,?,?,?)",
                (f"{now:%Y-%m-%d %H:%M}", cid, oid, kind, json.dumps(detail, ensure_ascii=False)))  # fmt: skip


def cancel(db: Path, now: dt.datetime, cid: str, oid: str) -> dict[str, Any]:
    with _tx(db) as con:
        row = _owned(con, cid, oid)
        _unshipped(row)
        con.execute("UPDATE orders SET status = 'cancelled' WHERE id = ?", (oid,))
        _log(con, now, cid, oid, "cancel", {"refund": row["total"]})
    return {"order_id": oid, "status": "cancelled", "refund": row["total"]}


def change_address(db: Path, now: dt.datetime, cid: str, oid: str, address: str) -> dict[str, Any]:
    with _tx(db) as con:
        _unshipped(_owned(con, cid, oid))
        con.execute("UPDATE orders SET address = ? WHERE id = ?", (address, oid))
        _log(con, now, cid, oid, "address", {"address": address})
    return {"order_id": oid, "status": "paid", "address": address}


def open_return(db: Path, now: dt.datetime, cid: str, oid: str, reason: str) -> dict[str, Any]:
    with _tx(db) as con:
        row = _owned(con, cid, oid)
        if row["status"] != "delivered":
            raise _refuse("cancelled" if row["status"] == "cancelled" else "not_delivered")
        if con.execute("SELECT 1 FROM returns WHERE order_id = ?", (oid,)).fetchone():
            raise _refuse("has_return")
        n = con.execute("SELECT COUNT(*) FROM changes WHERE kind = 'return'").fetchone()[0]
        return_id = f"TR{now:%m%d}{n + 1:04d}"  # its own series: never collides with the seeded TH numbers
        con.execute("INSERT INTO returns VALUES (?,?,?,?,?,?)",
                    (return_id, oid, "requested", reason, row["total"], f"{now:%Y-%m-%d}"))  # fmt: skip
        _log(con, now, cid, oid, "return", {"return_id": return_id, "reason": reason})
    return {"order_id": oid, "return_id": return_id, "status": "requested", "refund": row["total"]}


def add_write_routes(app: FastAPI, db: Path, now: dt.datetime, guarded: list[Any]) -> None:
    @app.post("/customers/{cid}/orders/{oid}/cancel", dependencies=guarded)
    def cancel_order(cid: str, oid: str) -> dict[str, Any]:
        return cancel(db, now, cid, oid)

    @app.post("/customers/{cid}/orders/{oid}/address", dependencies=guarded)
    def order_address(cid: str, oid: str, body: AddressChange) -> dict[str, Any]:
        return change_address(db, now, cid, oid, body.address)

    @app.post("/customers/{cid}/orders/{oid}/return", dependencies=guarded, status_code=201)
    def request_return(cid: str, oid: str, body: ReturnRequest) -> dict[str, Any]:
        return open_return(db, now, cid, oid, body.reason)
