"""The serving CLI: `kefu db upgrade`, `kefu keys`, `kefu models`, and `kefu serve` as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.serve.conftest import free_port
from typer.testing import CliRunner

from kefu.cli import app as cli


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [*args, "--set", f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}"])
    return r.exit_code, r.output


def test_keys_and_models_commands(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade")[0] == 0
    code, out = _run(tmp_path, "keys", "create", "--role", "agent", "--name", "desk")
    secret = next(line for line in out.splitlines() if line.startswith("kefu_"))
    key_id = secret.split("_", 2)[1]
    code, out = _run(tmp_path, "keys", "list")
    assert code == 0 and key_id in out and "agent" in out and secret.split("_", 2)[2] not in out
    assert _run(tmp_path, "keys", "revoke", key_id)[0] == 0
    assert "revoked" in _run(tmp_path, "keys", "list")[1]
    assert _run(tmp_path, "keys", "create", "--role", "root")[0] != 0  # a KefuError
    adapter = tmp_path / "ad"
    adapter.mkdir()
    assert _run(tmp_path, "models", "register", "v2", "--path", str(adapter))[0] == 0
    db = f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}"
    r = CliRunner().invoke(cli, ["models", "promote", "v2", "--eval-a", str(tmp_path), "--set", db])
    assert r.exit_code != 0 and "--eval-a without --eval-b" in str(r.exception)  # never silently ungated
    assert _run(tmp_path, "models", "promote", "v2", "--percent", "10")[0] == 0
    out = _run(tmp_path, "models", "list")[1]
    assert "v2\tadapter\tcanary\t10%" in out and "base\tbase\tactive\t90%" in out  # the split as served
    assert "canary v2 withdrawn" in _run(tmp_path, "models", "rollback")[1]
    assert "base\tbase\tactive\t100%" in _run(tmp_path, "models", "list")[1]
    code, out = _run(tmp_path, "audit", "verify")
    assert code == 0 and "intact" in out


def test_kefu_serve_starts_and_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    cmd = [
        sys.executable, "-m", "kefu", "serve", "--port", str(port),
        "--set", f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}",
        "--set", "serve.engine=upstream", "--set", "serve.upstreams=[http://127.0.0.1:9/v1]",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "kefu serve did not come up"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health["status"] == "ok" and health["engine"] == "upstream"
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "kefu", "messages": []})
        assert r.status_code == 401  # no default key
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        out = proc.stdout.read() if proc.stdout else ""
        # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in out
    finally:
        proc.kill()
