"""Serving fixtures: a real uvicorn server on a free loopback port, real PostgreSQL and Redis.

KEFU_TEST_PG_URL / KEFU_TEST_REDIS_URL override the service addresses. When CI=true and a service is unreachable
the test fails; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.config import KefuConfig, load_config
from kefu.serve import keys
from kefu.serve.app import Services, create_app

PG_URL = os.environ.get("KEFU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KEFU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, err: Exception) -> None:
    msg = f"{what} unreachable: {err}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg} (CI=true: the service must run)")
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running gateway: `url` for HTTP clients, `svc` for looking inside, `engine` for scripting replies."""

    url: str
    app: Any
    svc: Services
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base(self) -> str:
        return self.url + "/v1"

    def key(self, role: str = "client", rate_limit: int | None = None) -> str:
        return keys.create(self.svc.store, role, name=f"test-{role}", rate_limit=rate_limit, actor="test")

    def stop(self) -> None:
        self.svc.events.close()  # as `kefu serve` does on SIGTERM: live UI streams end, shutdown does not wait
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start(app: Any, port: int | None = None) -> Server:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return Server(f"http://127.0.0.1:{port}", app, app.state.kefu, server, thread)


def make_cfg(tmp_path: Path, *overrides: str) -> KefuConfig:
    cfg = load_config(None, [f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}", *overrides])
    cfg.root = tmp_path
    return cfg


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def cfg(tmp_path: Path) -> KefuConfig:
    return make_cfg(tmp_path)


@pytest.fixture
def server(cfg: KefuConfig, engine: ScriptedEngine) -> Iterator[Server]:
    srv = start(create_app(cfg, engine))
    yield srv
    srv.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema per test in the real PostgreSQL; the URL puts it first on the search path."""
    try:
        import psycopg

        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as e:
        unavailable("PostgreSQL", e)
    schema = f"kefu_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    conn.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix in the real Redis, deleted afterwards."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
    except Exception as e:
        unavailable("Redis", e)
    prefix = f"kefu-test-{uuid.uuid4().hex[:12]}."  # no trailing colon: --set values are YAML
    yield prefix
    for k in client.scan_iter(match=f"{prefix}*"):
        client.delete(k)
    client.close()
