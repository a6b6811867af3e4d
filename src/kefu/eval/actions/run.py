"""Run the actions suite: every task, n trials each, through the answer pipeline against a live reference backend.

    seed the shop -> start the backend on a free port -> for each task and trial: restore the seeded database,
    let the customer talk to the same AnswerPipeline `kefu serve` uses (the pending write carried between turns as
    the gateway does) -> judge the backend's final writes and what the customer was told -> pass^1, pass^k

pass^k is τ-bench's: the chance that k trials of a task all succeed, estimated from n >= k trials with c successes
as C(c, k) / C(n, k), averaged over tasks; pass^1 is the plain success rate.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from math import comb
from pathlib import Path
from typing import Any

from kefu.answer.confirm import Pending
from kefu.answer.engines.base import GenParams
from kefu.answer.pipeline import AnswerPipeline
from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.eval.actions.customer import Customer, ScriptedCustomer
from kefu.eval.actions.tasks import Task, build_tasks
from kefu.eval.generate import Messages
from kefu.eval.runner import Target, open_engine_for, open_pipeline
from kefu.shop.seed import seed
from kefu.shop.server import running_shop

MAX_TURNS = 4  # customer messages per trial: opening, order number, confirmation, one spare


@dataclass
class Trial:
    task: str
    kind: str
    trial: int
    ok: bool
    checks: dict[str, bool]
    turns: Messages
    actions: list[dict[str, Any]] = field(default_factory=list)
    handoff: str | None = None
    changes: list[list[str]] = field(default_factory=list)


def changes(db: Path) -> list[tuple[str, str, str, str]]:
    """The backend's writes during a trial: (customer, order, kind, detail JSON), in order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(con.execute("SELECT customer_id, order_id, kind, detail FROM changes ORDER BY seq"))
    finally:
        con.close()


def judge(task: Task, told: str, writes: list[tuple[str, str, str, str]], handoff: str | None) -> dict[str, bool]:
    """Success is all of: the backend's final writes, the facts told, nothing forbidden told, the handoff."""
    low = told.lower()
    state = [w[:3] for w in writes] == task.changes
    state = state and all(f'"{k}": "{v}"' in "".join(w[3] for w in writes) for k, v in task.change_detail.items())
    return {
        "state": state,
        "told": all(f.lower() in low for f in task.must_say),
        "not_told": not any(f.lower() in low for f in task.must_not_say),
        "handoff": task.handoff is None or task.handoff == (handoff is not None),
    }


async def run_trial(
    pipeline: AnswerPipeline, task: Task, trial: int, customer: Customer, live: Path, pristine: Path,
    params: GenParams,
) -> Trial:  # fmt: skip
    """One conversation from a freshly restored shop; the pending write passes from turn to turn."""
    shutil.copyfile(pristine, live)  # the backend opens the file per request: this restores the seeded state
    turns: Messages = []
    pending: Pending | None = None
    actions: list[dict[str, Any]] = []
    handoff: str | None = None
    message: str | None = customer.first(task, trial)
    while message is not None and len(turns) < 2 * MAX_TURNS:
        turns.append({"role": "user", "content": message})
        answer = await pipeline.answer(turns, params, customer_id=task.customer_id, pending=pending)
        turns.append({"role": "assistant", "content": answer.text})
        pending, actions, handoff = answer.pending, actions + answer.actions, handoff or answer.handoff
        if handoff:  # a human has the conversation now: the assistant's part ends (τ-bench's transfer)
            break
        message = customer.reply(task, trial, turns)
    writes = changes(live)
    told = "\n".join(t["content"] for t in turns if t["role"] == "assistant")
    checks = judge(task, told, writes, handoff)
    return Trial(task.id, task.kind, trial, all(checks.values()), checks, turns, actions, handoff,
                 [list(w) for w in writes])  # fmt: skip


def pass_hat_k(successes: list[int], n: int, k: int) -> float | None:
    """τ-bench's pass^k over tasks with `successes[i]` of n trials passed; None when k > n."""
    if k > n or not successes:
        return None
    return sum(comb(c, k) / comb(n, k) for c in successes) / len(successes)


def summarize(tasks: list[Task], trials: list[Trial], n: int, k: int) -> dict[str, Any]:
    """pass^1 and pass^k overall and per task type."""
    wins = {t.id: sum(tr.ok for tr in trials if tr.task == t.id) for t in tasks}
    kinds = sorted({t.kind for t in tasks})

    def row(ids: list[str]) -> dict[str, Any]:
        got = [wins[i] for i in ids]
        return {"tasks": len(ids), "pass^1": pass_hat_k(got, n, 1), f"pass^{k}": pass_hat_k(got, n, k)}

    return {
        "overall": row([t.id for t in tasks]),
        "by_type": {kind: row([t.id for t in tasks if t.kind == kind]) for kind in kinds},
        "by_lang": {lang: row([t.id for t in tasks if t.lang == lang]) for lang in ("zh", "en")},
    }


def _first_of_each(tasks: list[Task], n: int | None) -> list[Task]:
    if n is None:
        return tasks
    kept, seen = [], Counter[str]()
    for t in tasks:
        seen[t.kind] += 1
        if seen[t.kind] <= n:
            kept.append(t)
    return kept


def _shop_env(cfg: KefuConfig, token: str) -> dict[str, str | None]:
    """Point every action's credential at the eval's own backend; returns the old values to restore."""
    names = {a.auth_env for a in cfg.actions.tools if a.auth_env}
    old = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = f"Bearer {token}"  # the credential (a secret), never a behaviour switch
    return old


async def _run_all(
    cfg: KefuConfig, target: Target, tasks: list[Task], n: int, customer: Customer, live: Path, pristine: Path,
    tick: Any,
) -> tuple[list[Trial], float, str]:  # fmt: skip
    t0 = time.perf_counter()
    engine, owned = open_engine_for(cfg, target)
    try:
        pipeline = open_pipeline(cfg, target, engine)
        params = GenParams(max_tokens=cfg.eval.max_new_tokens, temperature=0.0)
        trials = []
        for task in tasks:
            for trial in range(n):
                trials.append(await run_trial(pipeline, task, trial, customer, live, pristine, params))
            tick(task)
        return trials, time.perf_counter() - t0, engine.name
    finally:
        close = getattr(engine, "close", None)
        if owned and close is not None:
            await close()


def run_actions_suite(
    cfg: KefuConfig, target: Target, trials: int = 4, k: int = 4, customer: Customer | None = None,
    per_kind: int | None = None, tick: Any = lambda task: None,
) -> dict[str, Any]:  # fmt: skip
    """Seed the reference shop, serve it on a free port, run every task `trials` times; the report's data.
    `per_kind`: only the first that many tasks of each type (a quick run)."""
    if not cfg.actions.tools:
        raise KefuError("actions.tools: no shop actions configured (see configs/shop-actions.yaml)")
    if trials < 1:
        raise KefuError(f"--trials {trials}: at least 1")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="kefu-actions-") as tmp:
        pristine, live = seed(Path(tmp) / "seed.sqlite"), Path(tmp) / "shop.sqlite"
        shutil.copyfile(pristine, live)
        tasks = _first_of_each(build_tasks(pristine), per_kind)
        old = _shop_env(cfg, token)
        try:
            with running_shop(live, token) as url:
                run_cfg = cfg.model_copy(update={"actions": cfg.actions.model_copy(update={"base_url": url})})
                who = customer or ScriptedCustomer()
                done, wall, engine = asyncio.run(_run_all(run_cfg, target, tasks, trials, who, live, pristine, tick))
        finally:
            for name, value in old.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    return {
        "suite": "actions",
        "run": {
            "target": target.describe(cfg),
            "started": started,
            "duration_s": wall,
            "trials": trials,
            "k": k,
            "tasks": len(tasks),
            "customer": type(customer or ScriptedCustomer()).__name__,
            "model_calls": cfg.actions.model_calls,
            "engine": engine,  # e.g. onnx-int8: what model.runtime 'auto' chose
        },
        "summary": summarize(tasks, done, trials, k),
        "tasks": [asdict(t) for t in tasks],
        "trials": [asdict(t) for t in done],
    }
