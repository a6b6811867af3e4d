"""The data flywheel for real: the sample shop, the embedded default model, `kefu serve`, customers through the
`openai` client, thumbs and agents through the API, then `kefu cycle` step by step, then the canary under traffic.

    python bench/flywheel_cycle.py --work /tmp/fw/run [--set flywheel.sft_steps=30 --set eval.limit=40 ...]

Phases (each heavy one under the shared lock, one phase or cycle step per hold, so other jobs queue between them):
1. `kefu init` the sample shop, `kefu kb ingest`, keys for a customer app, an agent desk and an admin.
2. `kefu serve`; the conversations of bench/data/flywheel_traffic.jsonl, 3 customers at a time. A simulated customer
   rates an answer up when it states the fact the question asks for, down with a comment otherwise; an agent
   corrects the first few answers rated down (POST /v1/feedback), and claims and answers every escalated
   conversation through /v1/agent. The server stops.
3. `kefu cycle --dry-run`, then `kefu cycle --until STEP` once per step (the run folder resumes between them);
   --one-hold runs the (rest of the) cycle and phase 4 in one hold; --resume goes on with an unfinished cycle of --work.
4. When the gate passed: `kefu serve` again, --canary-conversations more conversations (sticky by conversation
   id, so about canary_percent of them reach the new version), `kefu models list`, `kefu models watch` with the
   configured thresholds and once more with flywheel.min_conversations=3 to show what it would decide.
Writes <work>/flywheel_cycle.json and prints a table of wall times and before/after metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
METRICS = ("fact_accuracy", "overpromise_rate", "identity_consistency", "escalation_recall", "style_adherence",
           "chrf", "p99_latency_s")  # fmt: skip
COMMENTS = ["答非所问，没说到点子上", "说得不对，和页面上写的不一样", "没回答我的问题", "太笼统了"]


def kefu(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One kefu command in the project folder; its output goes to the log and is returned."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "160"}
    cwd = work / "shop" if (work / "shop").is_dir() else work
    r = subprocess.run([sys.executable, "-m", "kefu", *args], cwd=cwd, env=env, text=True,
                       capture_output=True)  # fmt: skip
    with (work / "commands.log").open("a", encoding="utf-8") as f:
        f.write(f"$ kefu {' '.join(args)}  (rc {r.returncode})\n{r.stdout}{r.stderr}\n")
    if check and r.returncode != 0:
        raise SystemExit(f"kefu {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return r


@contextlib.contextmanager
def heavy(lock: str | None, what: str, times: dict[str, float]) -> Iterator[None]:
    """Hold the shared lock for one phase; the phase's wall time excludes the wait for it."""
    with open(lock or os.devnull, "a") as fh:
        waited = time.perf_counter()
        if lock:
            fcntl.flock(fh, fcntl.LOCK_EX)
        t0 = time.perf_counter()
        print(f"{time.strftime('%H:%M:%S')} {what} (waited {t0 - waited:.0f} s for the lock)", flush=True)
        try:
            yield
        finally:
            times[what] = round(time.perf_counter() - t0, 1)
            print(f"{time.strftime('%H:%M:%S')} {what}: {times[what]} s", flush=True)


# ----------------------------------------------------------------------------- the server and its customers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(work: Path, sets: list[str], log: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}"}
    args = [sys.executable, "-m", "kefu", "serve", "--port", str(port), *(x for s in sets for x in ("--set", s))]
    with (work / log).open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(args, cwd=work / "shop", env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            t0 = time.perf_counter()
            while not _up(base):
                if proc.poll() is not None:
                    raise SystemExit(f"kefu serve exited ({proc.returncode}); see {work / log}")
                if time.perf_counter() - t0 > 900:
                    raise SystemExit("kefu serve did not become healthy in 15 minutes")
                time.sleep(1)
            print(f"  serving on {base} after {time.perf_counter() - t0:.0f} s", flush=True)
            yield base
        finally:
            proc.terminate()
            proc.wait(60)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def rated_up(answer: str, facts: list[str]) -> bool:
    flat = re.sub(r"\s+", "", answer).lower()
    return all(any(re.sub(r"\s+", "", alt).lower() in flat for alt in f.split("|")) for f in facts)


class Shop:
    """The customers, the agent desk and the counts of what they did."""

    def __init__(self, base: str, keys: dict[str, str], corrections: int, max_tokens: int) -> None:
        self.base, self.keys, self.max_tokens = base, keys, max_tokens
        self.client = openai.OpenAI(base_url=f"{base}/v1", api_key=keys["client"], timeout=900, max_retries=0)
        self.corrections_left = corrections
        self.log: list[dict[str, Any]] = []

    def say(self, cid: str, text: str, handoff: bool = False) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = self.client.chat.completions.create(
            model="kefu", messages=[{"role": "user", "content": text}], max_tokens=self.max_tokens,
            extra_body={"kefu": {"conversation_id": cid, "handoff": handoff}},
        )  # fmt: skip
        ext = (r.model_extra or {}).get("kefu", {})
        return {"answer": r.choices[0].message.content or "", "s": round(time.perf_counter() - t0, 2),
                "version": ext.get("model_version"), "handoff": bool(ext.get("handoff")),
                "cached": ext.get("cached")}  # fmt: skip

    def feedback(self, role: str, **body: Any) -> None:
        r = httpx.post(f"{self.base}/v1/feedback", json=body, headers={"Authorization": f"Bearer {self.keys[role]}"})
        r.raise_for_status()

    def conversation(self, conv: dict[str, Any], cid: str) -> dict[str, Any]:
        turns = [self.say(cid, t, handoff=conv.get("escalate", False) and t == "转人工") for t in conv["turns"]]
        row = {"id": cid, "topic": conv["id"], "turns": turns, "version": turns[0]["version"]}
        if conv.get("escalate"):
            row["rating"] = "escalated"
        elif rated_up(turns[-1]["answer"], conv["facts"]):
            self.feedback("client", conversation_id=cid, rating="up")
            row["rating"] = "up"
        elif self._take_correction():
            self.feedback("agent", conversation_id=cid, rating="down", correction=conv["reference"])
            row["rating"] = "down+correction"
        else:
            self.feedback("client", conversation_id=cid, rating="down", text=COMMENTS[len(self.log) % len(COMMENTS)])
            row["rating"] = "down"
        self.log.append(row)
        return row

    def _take_correction(self) -> bool:
        self.corrections_left -= 1
        return self.corrections_left >= 0

    def agent_desk(self, replies: dict[str, str]) -> int:
        """Claim and answer the open tickets of the escalated conversations."""
        auth = {"Authorization": f"Bearer {self.keys['agent']}"}
        agent = httpx.Client(base_url=f"{self.base}/v1/agent", headers=auth)
        done = 0
        for t in agent.get("/tickets", params={"status": "open"}).json()["data"]:
            if (text := replies.get(t["conversation_id"])) is None:
                continue
            agent.post(f"/tickets/{t['id']}/claim").raise_for_status()
            agent.post(f"/tickets/{t['id']}/reply", json={"text": text}).raise_for_status()
            done += 1
        return done


def drive(shop: Shop, convs: list[tuple[dict[str, Any], str]], workers: int) -> None:
    with ThreadPoolExecutor(workers) as pool:
        for row in pool.map(lambda c: shop.conversation(*c), convs):
            t = row["turns"][-1]
            print(f"  {row['id']:<24} {row['version']:<22} {row['rating']:<16} {t['s']:>6.1f} s  "
                  f"{t['answer'][:50]!r}", flush=True)  # fmt: skip


# ----------------------------------------------------------------------------- phases
def setup(work: Path) -> dict[str, str]:
    kefu(work, "init", str(work / "shop"))
    kefu(work, "kb", "ingest")
    return new_keys(work)


def new_keys(work: Path) -> dict[str, str]:
    from kefu.config import load_config
    from kefu.serve.ops import run_keys_create

    cfg = load_config(work / "shop" / "kefu.yaml")
    # one key stands for a whole app here (every customer of the shop): past the default per-key rate limit
    return {r: run_keys_create(cfg, r, f"flywheel-bench-{r}", rate_limit=100_000) for r in ("client", "agent", "admin")}


def traffic(work: Path, keys: dict[str, str], a: argparse.Namespace) -> dict[str, Any]:
    convs = [json.loads(x) for x in (HERE / "data" / "flywheel_traffic.jsonl").read_text("utf-8").splitlines() if x]
    with serving(work, a.serve_set, "serve-1.log") as base:
        shop = Shop(base, keys, a.corrections, a.max_tokens)
        drive(shop, [(c, f"live-{c['id']}") for c in convs], a.workers)
        replied = shop.agent_desk({f"live-{c['id']}": c["agent"] for c in convs if c.get("escalate")})
    return {"conversations": shop.log, "agent_replies": replied, **counts(shop.log)}


def counts(log: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"answers": sum(len(r["turns"]) for r in log)}
    for r in log:
        out[r["rating"]] = out.get(r["rating"], 0) + 1
    answered = [t["s"] for r in log for t in r["turns"] if not t["cached"]]
    out["answer_s_p50"] = sorted(answered)[len(answered) // 2] if answered else None
    return out


def cycle(work: Path, a: argparse.Namespace, times: dict[str, float]) -> dict[str, Any]:
    from kefu.flywheel.cycle import STEPS

    sets = [x for s in a.set for x in ("--set", s)]
    plan = kefu(work, "cycle", "--dry-run", *sets).stdout
    print(plan, flush=True)
    rc = 0
    # one step per lock hold, or (--one-hold, for a long queue at the lock) the rest of the cycle in one hold
    for step in STEPS[-1:] if a.one_hold else STEPS:
        with contextlib.nullcontext() if a.one_hold else heavy(a.lock, f"cycle {step}", times):
            r = kefu(work, "cycle", "--until", step, *sets, check=False)
        print("  " + "\n  ".join(line for line in both(r).splitlines() if line.strip()), flush=True)
        if r.returncode != 0:
            rc = r.returncode
            break
    run_dir = sorted((work / "shop" / "runs").glob("cycle-*"))[-1]
    state = json.loads((run_dir / "state.json").read_text("utf-8"))
    return {"dry_run": plan, "rc": rc, "run_dir": str(run_dir), "state": state, "evals": evals(run_dir)}


def evals(run_dir: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for side in ("live", "new"):
        path = run_dir / f"eval-{side}" / "metrics.json"
        if path.exists():
            m = json.loads(path.read_text("utf-8"))
            out[side] = {k: m["metrics"].get(k, {}).get("value") for k in METRICS}
            out[side]["n_cases"] = m["run"]["n_cases"]
            out[side]["duration_s"] = round(m["run"]["duration_s"], 1)
    return out


def canary(work: Path, keys: dict[str, str], a: argparse.Namespace) -> dict[str, Any]:
    convs = [json.loads(x) for x in (HERE / "data" / "flywheel_traffic.jsonl").read_text("utf-8").splitlines() if x]
    plain = [c for c in convs if not c.get("escalate")]
    picked = [(plain[i % len(plain)], f"canary-{i:03d}") for i in range(a.canary_conversations)]
    with serving(work, a.serve_set, "serve-2.log") as base:
        shop = Shop(base, keys, 0, a.max_tokens)
        drive(shop, picked, a.workers)
    split: dict[str, int] = {}
    for r in shop.log:
        split[r["version"]] = split.get(r["version"], 0) + 1
    listed = kefu(work, "models", "list").stdout
    watch = both(kefu(work, "models", "watch"))  # the verdict line goes to stderr, the metrics to stdout
    watch_small = both(kefu(work, "models", "watch", "--set", "flywheel.min_conversations=3"))
    print(listed, watch, watch_small, sep="\n", flush=True)
    return {"conversations": shop.log, "split": split, "models_list": listed, "watch": watch,
            "watch_min3": watch_small, **counts(shop.log)}  # fmt: skip


def both(r: subprocess.CompletedProcess[str]) -> str:
    return r.stderr + r.stdout


def table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="kefu cycle on the sample shop")
    t.add_column("phase")
    t.add_column("wall s", justify="right")
    for what, s in result["times"].items():
        t.add_row(what, f"{s:.1f}")
    Console().print(t)
    ev = result["cycle"]["evals"]
    if ev:
        m = Table(title="eval through the answer path: live (before) vs new (after)")
        m.add_column("metric")
        for side in ev:
            m.add_column(side, justify="right")
        for k in (*METRICS, "n_cases", "duration_s"):
            m.add_row(k, *(str(ev[s].get(k)) for s in ev))
        Console().print(m)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="Empty folder for the project, logs and results.")
    p.add_argument("--set", action="append", default=[], help="kefu cycle override (repeatable).")
    p.add_argument("--serve-set", action="append", default=[], help="kefu serve override (repeatable).")
    p.add_argument("--lock", default="/tmp/kefu-heavy.lock", help="Shared lock file; '' for none.")
    p.add_argument("--workers", type=int, default=3, help="Customers talking at the same time.")
    p.add_argument("--corrections", type=int, default=4, help="Answers rated down that an agent corrects.")
    p.add_argument("--max-tokens", type=int, default=160, help="max_tokens of each customer request.")
    p.add_argument("--canary-conversations", type=int, default=40)
    p.add_argument("--resume", action="store_true", help="The project and its traffic exist: go on with the cycle.")
    p.add_argument("--one-hold", action="store_true", help="The (rest of the) cycle and the canary in one lock hold.")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    result: dict[str, Any] = {"argv": sys.argv[1:], "times": times}
    if a.resume:  # the project and its traffic are there: go on with the cycle (new keys for the canary's customers)
        keys = new_keys(a.work)
    else:
        with heavy(a.lock, "init + kb ingest", times):
            keys = setup(a.work)
        with heavy(a.lock, "serve + traffic", times):
            result["traffic"] = traffic(a.work, keys, a)
        (a.work / "traffic.json").write_text(json.dumps(result["traffic"], ensure_ascii=False, indent=1), "utf-8")
    if a.one_hold:  # the rest of the cycle and the canary's traffic in one hold (each step's time: state.json)
        with heavy(a.lock, "cycle + canary traffic", times):
            result["cycle"] = cycle(a.work, a, times)
            if result["cycle"]["state"]["steps"].get("canary"):
                result["canary"] = canary(a.work, keys, a)
    else:
        result["cycle"] = cycle(a.work, a, times)
        if result["cycle"]["state"]["steps"].get("canary"):
            with heavy(a.lock, "serve + canary traffic", times):
                result["canary"] = canary(a.work, keys, a)
    times.update({f"  {k}": v["seconds"] for k, v in result["cycle"]["state"]["steps"].items() if "seconds" in v})
    (a.work / "flywheel_cycle.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), "utf-8")
    table(result)
    print(f"wrote {a.work / 'flywheel_cycle.json'}")


if __name__ == "__main__":
    main()
