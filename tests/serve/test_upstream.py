"""Upstream engine against two real OpenAI-compatible replicas: round-robin, failover after kill -9, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from tests.serve.conftest import free_port, make_cfg, start

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.serve import keys
from kefu.serve.app import create_app
from kefu.serve.db import Store

ROOT = Path(__file__).resolve().parents[2]


def _spawn(db: Path, port: int, reply: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.serve.scripted_server", str(db), str(port), reply]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90  # a busy CI machine imports torch slowly
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("scripted upstream did not start")


def _ask(client: openai.OpenAI, stream: bool = False) -> str:
    msgs = [{"role": "user", "content": "在吗"}]
    if stream:
        chunks = client.chat.completions.create(model="kefu", messages=msgs, stream=True, temperature=0.5)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    r = client.chat.completions.create(model="kefu", messages=msgs, temperature=0.5)
    return r.choices[0].message.content or ""


def test_failover_and_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "upstreams.sqlite"  # both replicas accept the same key
    key = keys.create(Store(f"sqlite:///{shared}"), "client", rate_limit=100_000)
    ucfg = make_cfg(tmp_path, f"serve.db_url=sqlite:///{shared}")
    a = start(create_app(ucfg, ScriptedEngine(default=Reply.text("您好，A。"))))
    b_port = free_port()
    b = _spawn(shared, b_port, "您好，B。")
    monkeypatch.setenv("KEFU_UPSTREAM_API_KEY", key)  # the upstream's key comes from the environment
    cfg = make_cfg(
        tmp_path / "gw", "serve.engine=upstream", f"serve.upstreams=[{a.base}, http://127.0.0.1:{b_port}/v1]",
        "serve.upstream_model=kefu", "serve.upstream_health_s=0.3",
    )  # fmt: skip
    gw = start(create_app(cfg))
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
        assert {_ask(client) for _ in range(4)} == {"您好，A。", "您好，B。"}  # round-robin over both
        os.kill(b.pid, signal.SIGKILL)
        b.wait()
        answers = [_ask(client, stream=i % 2 == 0) for i in range(10)]
        assert answers == ["您好，A。"] * 10  # every request succeeded, on the surviving replica
        replicas = gw.svc.engine.replicas  # type: ignore[attr-defined]
        assert [r.healthy for r in replicas] == [True, False]
        b = _spawn(shared, b_port, "您好，B。")
        deadline = time.monotonic() + 5
        while not replicas[1].healthy and time.monotonic() < deadline:
            time.sleep(0.1)
        assert replicas[1].healthy and "您好，B。" in {_ask(client) for _ in range(4)}
        a.stop()
        b.kill()
        b.wait()
        with pytest.raises(openai.InternalServerError) as e:
            _ask(client)
        assert e.value.status_code == 503
    finally:
        gw.stop()
        a.stop()
        b.kill()
