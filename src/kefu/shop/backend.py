"""The reference shop backend: FastAPI over the seeded SQLite shop (kefu.shop.seed).

Every order route is scoped by the customer the shop's front end authenticated: /customers/{cid}/orders/{oid}
answers 404 when the order is not that customer's, exactly as for an order that does not exist, so an order number
alone never discloses anything. Callers authenticate with `Authorization: Bearer <token>`, the token read from an
environment variable when the app is made. docs/actions.md is the contract a real shop implements or maps.
"""

from __future__ import annotations

import datetime as dt
import hmac
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException

from kefu.errors import KefuError
from kefu.shop.seed import NOW
from kefu.shop.writes import add_write_routes

_STATUS_TEXT = {
    "paid": ("已付款，待发货", "Paid, waiting to ship"),
    "shipped": ("已发货，运输中", "Shipped, in transit"),
    "delivered": ("已签收", "Delivered"),
    "cancelled": ("已取消", "Cancelled"),
}


def _rows(db: Path, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)  # reads never write (kefu.shop.writes does)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def _order(db: Path, cid: str, oid: str) -> dict[str, Any]:
    rows = _rows(db, "SELECT o.*, c.name, c.phone FROM orders o JOIN customers c ON c.id = o.customer_id "
                     "WHERE o.id = ? AND o.customer_id = ?", (oid, cid))  # fmt: skip
    if not rows:
        raise HTTPException(404, "order not found")
    r = rows[0]
    zh, en = _STATUS_TEXT[r["status"]]
    return {
        "order_id": r["id"], "status": r["status"], "status_text": zh, "status_text_en": en, "total": r["total"],
        "item": r["item"], "created_at": r["created_at"],
        "receiver": {"name": r["name"], "phone": r["phone"], "address": r["address"]},
    }  # fmt: skip


def _tracking(db: Path, now: dt.datetime, cid: str, oid: str) -> dict[str, Any]:
    order = _order(db, cid, oid)
    ship = _rows(db, "SELECT * FROM shipments WHERE order_id = ?", (oid,))
    if not ship:
        raise HTTPException(404, "order not shipped")
    events = _rows(db, "SELECT time, location, text, text_en FROM tracking_events WHERE order_id = ? ORDER BY seq",
                   (oid,))  # fmt: skip
    # In transit: how long the parcel has gone without news (the shop's 72-hour rule reads this); null once delivered.
    stale = None
    if order["status"] == "shipped":
        stale = round((now - dt.datetime.fromisoformat(events[-1]["time"])).total_seconds() / 3600, 1)
    return {
        "order_id": oid, "status": order["status"], "carrier": ship[0]["carrier"],
        "tracking_no": ship[0]["tracking_no"], "latest": events[-1], "events": events, "receiver": order["receiver"],
        "hours_since_update": stale,
    }  # fmt: skip


def _return(db: Path, cid: str, oid: str) -> dict[str, Any]:
    _order(db, cid, oid)
    rows = _rows(db, "SELECT id, status, reason, refund, created_at FROM returns WHERE order_id = ?", (oid,))
    if not rows:
        raise HTTPException(404, "no return for this order")
    return {"order_id": oid, **rows[0], "return_id": rows[0].pop("id")}


def create_shop_app(db: Path, token: str, now: dt.datetime = NOW) -> FastAPI:
    """The backend over an existing seeded database; every route but /health needs `Bearer <token>`. `now` is the
    shop's clock (default: the seed's, so the seeded parcels are late or on time the same way every day)."""
    if not db.is_file():
        raise KefuError(f"{db}: shop database not found (run `kefu shop seed --db {db}`)")
    if not token:
        raise KefuError("the shop backend needs a token: set the environment variable named by --token-env")

    def auth(authorization: Annotated[str | None, Header()] = None) -> None:
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    app = FastAPI(title="kefu reference shop", dependencies=[])
    guarded = [Depends(auth)]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/customers/{cid}/orders/{oid}", dependencies=guarded)
    def order(cid: str, oid: str) -> dict[str, Any]:
        return _order(db, cid, oid)

    @app.get("/customers/{cid}/orders/{oid}/tracking", dependencies=guarded)
    def tracking(cid: str, oid: str) -> dict[str, Any]:
        return _tracking(db, now, cid, oid)

    @app.get("/customers/{cid}/orders/{oid}/return", dependencies=guarded)
    def return_status(cid: str, oid: str) -> dict[str, Any]:
        return _return(db, cid, oid)

    @app.get("/coupons/{code}", dependencies=guarded)
    def coupon(code: str) -> dict[str, Any]:
        rows = _rows(db, "SELECT * FROM coupons WHERE code = ?", (code.upper(),))
        if not rows:
            raise HTTPException(404, "coupon not found")
        return rows[0]

    add_write_routes(app, db, now, guarded)
    return app


def customer_orders(db: Path, cid: str) -> Iterator[str]:
    """The order ids of one customer (for tests, the demo and the eval's hidden state)."""
    yield from (r["id"] for r in _rows(db, "SELECT id FROM orders WHERE customer_id = ? ORDER BY id", (cid,)))
