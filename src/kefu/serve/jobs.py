"""Training jobs the admin console starts: prepare -> train -> eval -> compare, or a flywheel cycle.

Each job is a folder `<flywheel.runs_dir>/jobs/<id>/` and one process, `python -m kefu.flywheel.job <folder>`
(serving never imports training or eval: the job process does, through the same run_* functions the CLI calls).
The gateway writes plan.json (kind, settings, the validated config, the live version), starts the process in its
own session with stdout and stderr to log.txt, and reads back what the process writes (kefu.flywheel.job):
events.jsonl, state.json and the trainer's trainer_log.jsonl. One job at a time, on this machine: the process
inherits an flock on `jobs/lock` and holds it until it exits, so a second start (from any gateway sharing the
folder) gets 409 while the first runs. Cancel is SIGTERM to the job's process group, SIGKILL 5 s later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.io import write_json

RUNNER = "kefu.flywheel.job"  # the module the job process runs
KINDS = ("train", "cycle")
# What the training page may set, as config paths (the form's fields; everything else comes from kefu.yaml).
SETTINGS = (
    "train.max_steps", "train.epochs", "train.lr", "train.lora_r", "train.lora_alpha", "train.batch_size",
    "train.grad_accum", "train.logging_steps", "train.time_budget_s", "eval.limit", "flywheel.sft_steps",
    "flywheel.canary_percent",
)  # fmt: skip
ENDED = ("done", "refused", "failed", "cancelled")
LOG_TAIL = 64_000  # bytes of log.txt a new watcher gets
KILL_AFTER_S = 5.0


class JobError(KefuError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being replaced
        return None


def job_config(cfg: KefuConfig, kind: str, settings: dict[str, Any], job_dir: Path) -> KefuConfig:
    """The server's config with the page's settings; a train job's data and outputs go inside its folder."""
    if kind not in KINDS:
        raise JobError(400, f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    tree = cfg.model_dump(mode="json")
    for key, value in settings.items():
        if key not in SETTINGS:
            raise JobError(400, f"settings.{key}: not a training page setting (one of {', '.join(SETTINGS)})")
        section, name = key.split(".")
        tree[section][name] = value
    if kind == "train":
        tree["data"]["output_dir"] = str(job_dir / "prepared")
        tree["train"]["output_dir"], tree["train"]["dpo_output_dir"] = str(job_dir / "sft"), str(job_dir / "dpo")
    try:
        return KefuConfig.model_validate(tree)
    except ValidationError as e:
        first = e.errors()[0]
        raise JobError(400, f"settings.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


@dataclass
class Cursor:
    """How far a watcher has read a job's files, and what the events said so far."""

    log: int = -1  # byte offset in log.txt; -1: start with its last LOG_TAIL bytes
    events: int = 0  # byte offset in events.jsonl
    steps: dict[str, str] = field(default_factory=dict)  # step -> start | done
    progress: dict[str, Any] = field(default_factory=dict)  # task -> latest progress event
    paths: dict[str, Any] = field(default_factory=dict)
    loss_n: int = -1  # loss points sent


class Jobs:
    def __init__(self, cfg: KefuConfig) -> None:
        self.cfg = cfg
        self.root = cfg.resolve(cfg.flywheel.runs_dir) / "jobs"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------------ start / cancel
    def start(self, kind: str, settings: dict[str, Any], live: dict[str, Any] | None, actor: str) -> dict[str, Any]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                running = next((j["id"] for j in self.list() if j["status"] == "running"), "another job")
                raise JobError(409, f"{running} is running: one training job at a time") from None
            job_id = dt.datetime.now(dt.timezone.utc).strftime("job-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
            job_dir = self.root / job_id
            cfg = job_config(self.cfg, kind, settings, job_dir)
            job_dir.mkdir()
            plan = {"id": job_id, "kind": kind, "settings": settings, "live": live, "actor": actor,
                    "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "config": cfg.model_dump(mode="json"), "root": str(self.cfg.root)}  # fmt: skip
            write_json(job_dir / "plan.json", plan)
            self._spawn(job_id, job_dir, lock)
        finally:
            os.close(lock)  # the job process keeps its inherited copy, and with it the lock, until it exits
        return self.summary(job_dir)

    def _spawn(self, job_id: str, job_dir: Path, lock: int) -> None:
        with (job_dir / "log.txt").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", RUNNER, str(job_dir)], cwd=self.cfg.root, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(lock,),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        (job_dir / "pid").write_text(str(proc.pid))
        self._procs[job_id] = proc
        threading.Thread(target=proc.wait, daemon=True).start()  # reaped when it ends: no zombie

    def cancel(self, job_id: str, actor: str) -> dict[str, Any]:
        job_dir = self.path(job_id)
        if self.status(job_dir) != "running":
            raise JobError(409, f"{job_id} is not running")
        write_json(job_dir / "cancelled.json", {"by": actor, "at": time.time()})
        pid = int((job_dir / "pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        killer = threading.Timer(KILL_AFTER_S, self._kill, (job_dir, pid))
        killer.daemon = True  # a stopping gateway does not wait for it
        killer.start()
        return self.summary(job_dir)

    def _kill(self, job_dir: Path, pid: int) -> None:
        if self._alive(job_dir):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    # ------------------------------------------------------------------ reading
    def defaults(self) -> dict[str, Any]:
        """Each setting's value in the server's kefu.yaml: what the form shows before anyone changes it."""
        tree = self.cfg.model_dump(mode="json")
        return {key: tree[key.split(".")[0]][key.split(".")[1]] for key in SETTINGS}

    def path(self, job_id: str) -> Path:
        job_dir = self.root / job_id
        if not job_id.startswith("job-") or "/" in job_id or not (job_dir / "plan.json").is_file():
            raise JobError(404, f"job {job_id!r}: no such job")
        return job_dir

    def _alive(self, job_dir: Path) -> bool:
        proc = self._procs.get(job_dir.name)
        if proc is not None:
            return proc.poll() is None
        try:  # started by another gateway (or before a restart): is that pid still this job's runner?
            pid = int((job_dir / "pid").read_text())
            return str(job_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False

    def status(self, job_dir: Path) -> str:
        state = _read_json(job_dir / "state.json") or {}
        if state.get("status") in ENDED:
            return str(state["status"])
        if (job_dir / "cancelled.json").is_file():
            return "cancelled"
        return "running" if self._alive(job_dir) else "failed"

    def summary(self, job_dir: Path) -> dict[str, Any]:
        plan = _read_json(job_dir / "plan.json") or {}
        state = _read_json(job_dir / "state.json") or {}
        keys = ("id", "kind", "settings", "live", "actor", "created_at")
        return {**{k: plan.get(k) for k in keys}, "status": self.status(job_dir), "error": state.get("error")}

    def list(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        dirs = sorted((p for p in self.root.iterdir() if (p / "plan.json").is_file()), reverse=True)
        return [self.summary(p) for p in dirs]

    def read(self, job_id: str, cur: Cursor) -> dict[str, Any]:
        """What is new since `cur` (which moves on): log text, steps, progress, loss points, the compare report."""
        job_dir = self.path(job_id)
        out = self.summary(job_dir)  # status first: what follows is at least as new as it
        out["log"] = _read_log(job_dir / "log.txt", cur)
        _read_events(job_dir / "events.jsonl", cur)
        out |= {"steps": cur.steps, "progress": cur.progress, "paths": cur.paths}
        loss = loss_points([Path(p) for p in cur.paths.get("train", [])])
        if sum(len(v) for v in loss.values()) != cur.loss_n:
            out["loss"], cur.loss_n = loss, sum(len(v) for v in loss.values())
        if cur.paths.get("compare"):
            out["report"] = report(Path(cur.paths["compare"]))
        return out


def _read_log(path: Path, cur: Cursor) -> str:
    if not path.is_file():
        return ""
    size = path.stat().st_size
    start = max(0, size - LOG_TAIL) if cur.log < 0 else cur.log
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(size - start)
    cur.log = start + len(data)
    return data.decode("utf-8", errors="replace")


def _read_events(path: Path, cur: Cursor) -> None:
    if not path.is_file():
        return
    with path.open("rb") as f:
        f.seek(cur.events)
        data = f.read()
    whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
    cur.events += len(whole)
    for line in whole.decode("utf-8", errors="replace").splitlines():
        ev = json.loads(line)
        if ev["type"] == "step":
            cur.steps[ev["step"]] = ev["status"]
        elif ev["type"] == "progress":
            cur.progress[ev["task"]] = {k: ev[k] for k in ("completed", "total", "info")}
        elif ev["type"] == "paths":
            cur.paths = {k: v for k, v in ev.items() if k not in ("t", "type")}


def loss_points(train_dirs: list[Path]) -> dict[str, list[list[float]]]:
    """{"<stage> loss": [[step, loss], ...], "<stage> eval_loss": [...]} from each run's trainer_log.jsonl."""
    series: dict[str, list[list[float]]] = {}
    for run in train_dirs:
        path = run / "trainer_log.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:  # the last one may be half written
            row = json.loads(line) if line.strip() else {}
            for key in ("loss", "eval_loss"):
                if key in row:
                    series.setdefault(f"{run.name} {key}", []).append([row["step"], row[key]])
    return series


def report(compare_dir: Path) -> dict[str, Any] | None:
    """The gate's verdict and the metric table (live vs new) from compare.json, once the comparison ran."""
    data = _read_json(compare_dir / "compare.json")
    if data is None:
        return None
    keys = ("passed", "failures", "deltas", "checks", "a", "b", "new_overpromises")
    return {k: data.get(k) for k in keys} | {"better": len(data.get("better", [])), "worse": len(data.get("worse", []))}
