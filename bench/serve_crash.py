"""kill -9 under write load loses no committed audit row: integrity check and hash chain pass after every crash.

    python bench/serve_crash.py [--rounds 5] [--seconds 3] [--clients 16] [--out bench/serve_crash.json]

Each round starts, on the same SQLite store (WAL, synchronous=FULL):
  - the gateway (scripted engine) under streaming chat load: every answer is an audit row written by its
    batching writer thread;
  - an admin writer process appending audit rows one transaction at a time and printing each id after COMMIT
    returned (an acknowledged row);
  - a reader in this process that snapshots (id, hash) of committed rows from its own connection.
Then both processes get SIGKILL. Pass: PRAGMA integrity_check is ok, `audit.verify` passes, every acknowledged id
and every snapshotted (id, hash) is still there, unchanged - for every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_load import _wait_up, drive  # noqa: E402


def admin_writer(db: str) -> None:
    """The writer process: append forever, print each id once its commit returned."""
    from kefu.serve import audit
    from kefu.serve.db import Store

    store = Store(f"sqlite:///{db}")
    n = 0
    while True:
        n += 1
        last = audit.record(store, "bench", "admin.tick", {"n": n})
        print(last, flush=True)


def _snapshot(db: str, seen: dict[int, str], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            con = sqlite3.connect(db, timeout=5)
            rows = con.execute("SELECT id, hash FROM kefu_audit WHERE id > ?", (max(seen, default=0),)).fetchall()
            con.close()
            seen.update({int(i): h for i, h in rows})
        except sqlite3.Error:
            pass
        time.sleep(0.1)


def _acks(proc: subprocess.Popen[str], acked: list[int]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().isdigit():
            acked.append(int(line))


def _load(url: str, key: str, clients: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            asyncio.run(drive(url, key, clients, clients * 4))
        except Exception:  # the server is killed mid-request: expected
            return


def _round(db: str, port: int, key: str, seconds: float, clients: int) -> dict[str, Any]:
    py = sys.executable
    server = subprocess.Popen(
        [py, str(HERE / "serve_load.py"), "--serve", db, "--port", str(port), "--delay", "0", "--piece-delay", "0"],
        stderr=subprocess.DEVNULL,
    )
    _wait_up(f"http://127.0.0.1:{port}", server)
    writer = subprocess.Popen([py, __file__, "--writer", db], stdout=subprocess.PIPE, text=True)
    acked: list[int] = []
    seen: dict[int, str] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=_acks, args=(writer, acked), daemon=True),
        threading.Thread(target=_snapshot, args=(db, seen, stop), daemon=True),
        threading.Thread(target=_load, args=(f"http://127.0.0.1:{port}", key, clients, stop), daemon=True),
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    for p in (server, writer):
        os.kill(p.pid, signal.SIGKILL)  # no shutdown, no flush: the crash itself
    for p in (server, writer):
        p.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    return _check(db, acked, seen)


def _check(db: str, acked: list[int], seen: dict[int, str]) -> dict[str, Any]:
    from kefu.serve import audit
    from kefu.serve.db import Store

    con = sqlite3.connect(db)
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    stored = dict(con.execute("SELECT id, hash FROM kefu_audit").fetchall())
    answers = con.execute("SELECT count(*) FROM kefu_audit WHERE action = 'answer'").fetchone()[0]
    con.close()
    verdict = audit.verify(Store(f"sqlite:///{db}"))
    lost_acked = [i for i in acked if i not in stored]
    changed = [i for i, h in seen.items() if stored.get(i) != h]
    return {
        "integrity_check": integrity,
        "chain_ok": verdict.ok,
        "chain_problem": verdict.problem,
        "rows": verdict.rows,
        "answer_rows": answers,
        "acknowledged": len(acked),
        "snapshotted": len(seen),
        "lost_acknowledged": lost_acked[:10],
        "lost_or_changed_snapshotted": changed[:10],
        "ok": integrity == "ok" and verdict.ok and not lost_acked and not changed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--port", type=int, default=8781)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--writer", nargs=1, help=argparse.SUPPRESS)  # internal: the admin writer process
    args = ap.parse_args()
    if args.writer:
        admin_writer(args.writer[0])
        return
    from kefu.serve import keys
    from kefu.serve.db import Store

    db = str(Path(tempfile.mkdtemp(prefix="kefu-crash-")) / "kefu.sqlite")
    key = keys.create(Store(f"sqlite:///{db}"), "client", "crash", rate_limit=10_000_000, actor="bench")
    rounds = []
    for r in range(args.rounds):
        result = _round(db, args.port, key, args.seconds, args.clients)
        print(f"round {r + 1}: {json.dumps(result, ensure_ascii=False)}", flush=True)
        rounds.append(result)
    summary = {"rounds": rounds, "pass": all(r["ok"] for r in rounds), "db": db}
    print(json.dumps({"pass": summary["pass"], "final_rows": rounds[-1]["rows"]}))
    if args.out:
        from kefu.io import write_json

        write_json(args.out, summary)
    sys.exit(0 if summary["pass"] else 1)


if __name__ == "__main__":
    main()
