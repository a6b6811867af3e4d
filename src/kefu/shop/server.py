"""The reference shop backend run in-process on a free loopback port (the actions eval and tests use it)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from kefu.errors import KefuError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_shop(db: Path, token: str, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve the backend over `db` on 127.0.0.1:<free port> in a thread; yields its base URL; stops it on exit."""
    import uvicorn

    from kefu.shop.backend import create_shop_app

    config = uvicorn.Config(create_shop_app(db, token), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="kefu-shop")
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise KefuError(f"the reference shop backend did not start on port {config.port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
