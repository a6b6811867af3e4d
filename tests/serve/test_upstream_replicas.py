"""The gateway over several fake OpenAI-compatible replicas on loopback: balancing, failover before the first token,
a replica killed (SIGKILL) or stalled mid-stream, per-replica metrics and replica state in /health.

The fake replica is a real HTTP server (stdlib, chunked SSE like vLLM's): in a thread, or as its own process when
it must be killed. Run as a script, this file is that process: `python -m tests.serve.test_upstream_replicas PORT MODE`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.serve.conftest import Server, free_port, make_cfg, start

from kefu.serve.app import create_app

ROOT = Path(__file__).resolve().parents[2]
# The first piece ends a sentence: the output guard releases text a whole sentence at a time, so that piece is
# what the customer has seen when a replica dies after it.
PIECES = ["您好。", "签收后7天内", "可以退货。"]


class Replica(BaseHTTPRequestHandler):
    """One fake vLLM; `mode` (on the server): ok, error_500, drop_before_text, garbage, error_event, stall_after_first,
    slow."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        healthy = self.server.mode != "unhealthy"  # type: ignore[attr-defined]
        self._send(200 if healthy else 503, b'{"object": "list", "data": [{"id": "kefu-shop"}]}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.requests += 1
        mode = server.mode
        if mode == "error_500":
            self._send(500, b'{"error": {"message": "CUDA out of memory"}}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        if mode == "drop_before_text":
            self.connection.shutdown(socket.SHUT_RDWR)  # the role chunk went out, then the connection died
            return
        if mode == "garbage":
            self._write(b"data: {not json\n\n")
            self._end()
            return
        if mode == "error_event":
            self._event({"error": {"message": "engine overloaded"}})
            self._end()
            return
        self._stream(mode, server.name)

    def _stream(self, mode: str, name: str) -> None:
        for i, piece in enumerate([*PIECES[:-1], PIECES[-1] + name]):
            self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            if i == 0 and mode == "stall_after_first":
                time.sleep(30)  # a wedged GPU: the socket stays open, nothing more comes
            if mode == "slow":
                time.sleep(1.0)
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": len(PIECES)}})
        self._write(b"data: [DONE]\n\n")
        self._end()

    def _event(self, obj: dict[str, Any]) -> None:
        self._write(f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def fake_replica(name: str, mode: str = "ok", port: int = 0) -> ThreadingHTTPServer:
    server: Any = ThreadingHTTPServer(("127.0.0.1", port), Replica)
    server.daemon_threads = True
    server.mode, server.name, server.requests = mode, name, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def spawn_replica(port: int, mode: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.serve.test_upstream_replicas", str(port), mode]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fake replica did not start")


def gateway(tmp_path: Path, bases: list[str], *extra: str) -> Server:
    cfg = make_cfg(
        tmp_path, "serve.engine=upstream", f"serve.upstreams=[{', '.join(bases)}]", "serve.upstream_model=kefu-shop",
        "serve.upstream_health_s=0.2", "serve.cache_ttl_s=0", "serve.upstream_timeout_s=10", *extra,
    )  # fmt: skip
    return start(create_app(cfg))


def ask(client: openai.OpenAI, stream: bool = True) -> str:
    msgs = [{"role": "user", "content": "能退货吗"}]
    if not stream:
        r = client.chat.completions.create(model="kefu", messages=msgs)
        return r.choices[0].message.content or ""
    chunks = client.chat.completions.create(model="kefu", messages=msgs, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def health(gw: Server) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{gw.url}/health").json()["engine_state"]
    return state


def scrape(gw: Server) -> str:
    return httpx.get(f"{gw.url}/metrics").text


@pytest.fixture
def replicas() -> Any:
    made: list[ThreadingHTTPServer] = []

    def make(name: str, mode: str = "ok") -> ThreadingHTTPServer:
        made.append(fake_replica(name, mode))
        return made[-1]

    yield make
    for s in made:
        s.shutdown()
        s.server_close()


def test_requests_spread_over_replicas_with_state_and_metrics(tmp_path: Path, replicas: Any) -> None:
    a, b = replicas("A"), replicas("B")
    gw = gateway(tmp_path, [url(a), url(b)])
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
        answers = [ask(client, stream=i % 2 == 0) for i in range(6)]
        assert set(answers) == {"".join(PIECES) + "A", "".join(PIECES) + "B"}
        assert a.requests == b.requests == 3  # type: ignore[attr-defined]
        state = health(gw)
        assert state["status"] == "ok" and [r["healthy"] for r in state["replicas"]] == [True, True]
        assert [r["requests"]["ok"] for r in state["replicas"]] == [3, 3]
        metrics = scrape(gw)
        assert f'kefu_upstream_requests_total{{outcome="ok",replica="{url(a)}"}} 3.0' in metrics
        assert f'kefu_upstream_healthy{{replica="{url(b)}"}} 1.0' in metrics
        assert f'kefu_upstream_time_to_first_token_seconds_count{{replica="{url(a)}"}} 3.0' in metrics
    finally:
        gw.stop()


@pytest.mark.parametrize("failure", ["error_500", "drop_before_text", "error_event", "garbage", "refused"])
def test_a_replica_failing_before_the_first_token_fails_over(tmp_path: Path, replicas: Any, failure: str) -> None:
    bad = f"http://127.0.0.1:{free_port()}/v1" if failure == "refused" else url(replicas("bad", failure))
    good = replicas("G")
    gw = gateway(tmp_path, [bad, url(good)], "serve.upstream_health_s=60")  # no check brings it back meanwhile
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
        assert [ask(client, stream=i % 2 == 0) for i in range(4)] == ["".join(PIECES) + "G"] * 4
        state = health(gw)
        assert state["status"] == "degraded" and state["healthy"] == 1
        down = state["replicas"][0]
        assert not down["healthy"] and down["requests"]["failover"] == 1 and down["last_error"]
        assert f'kefu_upstream_requests_total{{outcome="failover",replica="{bad}"}} 1.0' in scrape(gw)
    finally:
        gw.stop()


def test_a_replica_killed_mid_stream_ends_the_answer_cleanly(tmp_path: Path, replicas: Any) -> None:
    port = free_port()
    doomed = spawn_replica(port, "slow")
    survivor = replicas("S")
    gw = gateway(tmp_path, [f"http://127.0.0.1:{port}/v1", url(survivor)])
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0, timeout=20)
        msgs = [{"role": "user", "content": "能退货吗"}]
        stream = client.chat.completions.create(model="kefu", messages=msgs, stream=True)
        got, t0 = [], time.monotonic()
        with pytest.raises(openai.APIError, match="failed mid-answer"):  # the gateway's error event, then [DONE]
            for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    got.append(text)
                    doomed.send_signal(signal.SIGKILL)  # after the first token reached the customer
        assert got == [PIECES[0]] and time.monotonic() - t0 < 5  # the stream ended, no hang
        assert ask(client) == "".join(PIECES) + "S"  # the next customer is answered by the survivor
        assert health(gw)["replicas"][0]["requests"]["mid_stream_error"] == 1
    finally:
        doomed.kill()
        doomed.wait()
        gw.stop()


def test_a_replica_stalling_mid_stream_times_out_instead_of_hanging(tmp_path: Path, replicas: Any) -> None:
    stalled = replicas("X", "stall_after_first")
    gw = gateway(tmp_path, [url(stalled)], "serve.upstream_chunk_timeout_s=0.5", "serve.upstream_health_s=60")
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0, timeout=20)
        t0 = time.monotonic()
        with pytest.raises(openai.APIError, match="upstream_chunk_timeout_s"):
            ask(client)
        assert time.monotonic() - t0 < 5
        assert health(gw)["status"] == "down"  # until a health check finds it answering /models again
    finally:
        gw.stop()


if __name__ == "__main__":
    main: Any = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Replica)
    main.mode, main.name, main.requests = sys.argv[2], "K", 0
    main.serve_forever()
