"""The reference shop backend over real HTTP: the contract of docs/actions.md, and a deterministic seed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from kefu.errors import KefuError
from kefu.shop.backend import create_shop_app, customer_orders
from kefu.shop.seed import seed
from tests.actions.conftest import TOKEN, Shop
from tests.serve.conftest import free_port

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_seed_is_deterministic(tmp_path: Path) -> None:
    a, b = seed(tmp_path / "a.sqlite"), seed(tmp_path / "b.sqlite")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert list(customer_orders(a, "C1001")) == ["DD2026112400002", "DD2026120200003", "DD2026120300001"]
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left behind


def test_orders_are_scoped_by_customer(shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    mine = httpx.get(f"{shop.url}/customers/C1001/orders/{order}/tracking", headers=AUTH)
    theirs = httpx.get(f"{shop.url}/customers/C1002/orders/{order}/tracking", headers=AUTH)
    unknown = httpx.get(f"{shop.url}/customers/C1002/orders/DD2099010199999", headers=AUTH)
    assert mine.status_code == 200 and mine.json()["latest"]["text"] == shop.latest_event(order)[1]
    assert theirs.status_code == unknown.status_code == 404  # indistinguishable from an unknown order
    assert theirs.json() == {"detail": "order not found"}


def test_token_is_required(shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    assert httpx.get(f"{shop.url}/customers/C1001/orders/{order}").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(f"{shop.url}/customers/C1001/orders/{order}", headers=wrong).status_code == 401
    assert httpx.get(f"{shop.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{shop.url}/coupons/new20", headers=AUTH).json()["discount"] == 20.0


def test_backend_refuses_to_start_without_token_or_db(tmp_path: Path) -> None:
    with pytest.raises(KefuError, match="token"):
        create_shop_app(seed(tmp_path / "s.sqlite"), "")
    with pytest.raises(KefuError, match="not found"):
        create_shop_app(tmp_path / "missing.sqlite", TOKEN)


def test_kefu_shop_serve_command(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "shop.sqlite"
    cmd = [sys.executable, "-m", "kefu", "shop", "serve", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(cmd, env={**os.environ, "KEFU_SHOP_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/customers/C1001/orders/DD2026120200003", headers=AUTH)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "kefu shop serve did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["status"] == "delivered" and db.is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
