"""Shop-action fixtures: the reference shop backend on a real loopback port, and a gateway configured for it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.config import KefuConfig, load_config
from kefu.serve.app import create_app
from kefu.shop.backend import create_shop_app
from tests.serve.conftest import Server, free_port, start

ROOT = Path(__file__).resolve().parents[2]
ACTIONS_YAML = ROOT / "configs" / "shop-actions.yaml"
TOKEN = "test-shop-token"
MODEL_REPLY = "模型自己的回答"


@dataclass
class Shop:
    url: str
    db: Path
    server: uvicorn.Server
    thread: threading.Thread

    def latest_event(self, order_id: str) -> tuple[str, str]:
        """(time, text) of the order's newest tracking event, read from the backend's own database."""
        con = sqlite3.connect(self.db)
        row = con.execute("SELECT time, text FROM tracking_events WHERE order_id = ? ORDER BY seq DESC LIMIT 1",
                          (order_id,)).fetchone()  # fmt: skip
        con.close()
        return row

    def shipped_order(self, customer: str) -> str:
        con = sqlite3.connect(self.db)
        row = con.execute("SELECT o.id FROM orders o JOIN shipments s ON s.order_id = o.id WHERE o.customer_id = ? "
                          "ORDER BY o.id LIMIT 1", (customer,)).fetchone()  # fmt: skip
        con.close()
        return str(row[0])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_shop(db: Path, port: int | None = None) -> Shop:
    port = port or free_port()
    config = uvicorn.Config(create_shop_app(db, TOKEN), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("shop backend did not start")
        time.sleep(0.01)
    return Shop(f"http://127.0.0.1:{port}", db, server, thread)


def actions_cfg(tmp_path: Path, base_url: str) -> KefuConfig:
    cfg = load_config(ACTIONS_YAML, [f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}",
                                     f"actions.base_url={base_url}"])  # fmt: skip
    cfg.root = tmp_path
    return cfg


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(default=Reply.text(MODEL_REPLY))


@pytest.fixture
def gateway(tmp_path: Path, shop: Shop, engine: ScriptedEngine) -> Iterator[Server]:
    srv = start(create_app(actions_cfg(tmp_path, shop.url), engine))
    yield srv
    srv.stop()
