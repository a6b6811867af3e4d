"""How long an agent's reply takes to reach the customer's widget: pushed over SSE (now) vs the 2 s poll (before).

A real gateway on loopback (scripted engine: no model needed), one handed-off conversation, the customer's event
stream open; the agent sends N replies. Push latency is measured from just before the agent's POST to the moment
the customer's stream yields the message. The poll column replays the same reply times against a 2 s poll started
at a random phase (what the widget did before): the wait until the next poll, plus one messages read.

    python bench/ui_push.py --n 40 --out bench/results/ui_push.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.config import load_config
from kefu.serve import keys
from kefu.serve.app import create_app

POLL_S = 2.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server


def measure(n: int, port: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kefu-push-"))
    cfg = load_config(None, [f"serve.db_url=sqlite:///{root / 'kefu.sqlite'}", "serve.rate_limit_per_minute=100000"])
    app = create_app(cfg, ScriptedEngine())
    server, url = serve(app, port), f"http://127.0.0.1:{port}"
    try:
        store = app.state.kefu.store
        client, agent = keys.create(store, "client", actor="bench"), keys.create(store, "agent", actor="bench")
        auth = {"Authorization": f"Bearer {agent}"}
        body = {"model": "kefu", "messages": [{"role": "user", "content": "转人工"}],
                "kefu": {"conversation_id": "bench", "handoff": True}}  # fmt: skip
        httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {client}"})
        ticket = httpx.get(url + "/v1/agent/tickets", headers=auth).json()["data"][0]["id"]
        httpx.post(f"{url}/v1/agent/tickets/{ticket}/claim", headers=auth)
        push, read = _push_latencies(url, client, auth, ticket, n)
    finally:
        app.state.kefu.events.close()
        server.should_exit = True
    rng = random.Random(0)
    poll = [rng.uniform(0, POLL_S) + statistics.median(read) for _ in range(n)]
    return {"n": n, "push_ms": [round(x * 1000, 2) for x in push], "poll_ms": [round(x * 1000, 2) for x in poll]}


def _push_latencies(
    url: str, client: str, auth: dict[str, str], ticket: int, n: int
) -> tuple[list[float], list[float]]:
    push, read = [], []
    with httpx.Client(timeout=httpx.Timeout(5, read=30)) as http:
        headers = {"Authorization": f"Bearer {client}"}
        seen = http.get(url + "/v1/conversations/bench/messages", headers=headers).json()["messages"]
        after = max(m["id"] for m in seen)  # the stream starts after what is stored already
        with http.stream("GET", f"{url}/v1/conversations/bench/events?after={after}", headers=headers) as stream:
            lines = stream.iter_lines()
            for i in range(n):
                t0 = time.perf_counter()
                httpx.post(f"{url}/v1/agent/tickets/{ticket}/reply", json={"text": f"回复 {i}"}, headers=auth)
                for line in lines:
                    if line.startswith("data: ") and f"回复 {i}" in line:
                        push.append(time.perf_counter() - t0)
                        break
                t1 = time.perf_counter()  # what one poll's read costs, for the poll column
                http.get(f"{url}/v1/conversations/bench/messages?after={after + i + 1}", headers=headers)
                read.append(time.perf_counter() - t1)
    return push, read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ui_push.json"))
    ap.add_argument("--port", type=int, default=8791)
    args = ap.parse_args()
    result = measure(args.n, args.port)
    print(f"{'agent reply -> customer':<26}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name in ("push", "poll"):
        v = result[f"{name}_ms"]
        label = "SSE push (now)" if name == "push" else f"{POLL_S:g} s poll (before)"
        print(f"{label:<26}{pct(v, 0.5):>10.1f}{pct(v, 0.95):>10.1f}{max(v):>10.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
