"""Trainer callbacks shared by SFT and DPO: progress bar, sealed checkpoints, loss plot and train_report.json.

Checkpoints: transformers writes `checkpoint-N/` file by file, so a killed process can leave half of one. We seal a
checkpoint (an atomically written marker) only after the Trainer has finished writing it, resume only from sealed
ones, and prune old checkpoints by unsealing before deleting, so no crash ever leaves a half checkpoint that looks
complete.
"""

from __future__ import annotations

import io
import json
import math
import re
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from kefu.io import atomic_open, write_json
from kefu.progress import PlainProgress, Progress, progress
from kefu.train.distributed import barrier

SEAL = "kefu-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ----------------------------------------------------------------------------- checkpoints
def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """All `checkpoint-N` folders (sealed or not), oldest first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    sealed = [p for _, p in checkpoints(run_dir) if (p / SEAL).is_file()]
    return sealed[-1] if sealed else None


def drop_incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """Delete checkpoints a killed run left unsealed, so the Trainer never reads or overwrites half of one."""
    dropped = [p for _, p in checkpoints(run_dir) if not (p / SEAL).is_file()]
    for p in dropped:
        shutil.rmtree(p, ignore_errors=True)
    return dropped


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint once written, then keep only the newest `keep` (plus the best one, when tracked)."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.run_dir, self.keep = run_dir, keep

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        barrier()  # under a launcher every rank writes its shard and RNG state: seal once all have finished
        if not state.is_world_process_zero:
            return
        ckpt = self.run_dir / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            write_json(ckpt / SEAL, {"global_step": state.global_step, "sealed_at": time.time()})
        self._prune(state)

    def _prune(self, state: TrainerState) -> None:
        best = Path(state.best_model_checkpoint).resolve() if state.best_model_checkpoint else None
        sealed = [p for _, p in checkpoints(self.run_dir) if (p / SEAL).is_file()]
        for p in sealed[: -self.keep]:
            if p.resolve() == best:
                continue
            (p / SEAL).unlink()  # unseal first: a crash mid-delete leaves an unsealed (ignored) folder
            shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- progress
class RichProgress(TrainerCallback):
    """One progress bar with step, loss, tokens/s, elapsed time and ETA (plain lines when not a terminal); each
    logged loss also printed as a line (for log files)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar: Progress | PlainProgress | None = None
        self.task: Any = None
        self.t0, self.tokens0, self.loss = 0.0, 0, float("nan")

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        # global_step is already restored here when resuming, so the bar and tokens/s start from the checkpoint.
        self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
        self.bar = progress(self.console)
        self.task = self.bar.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self.bar.start()

    def tokens_per_s(self, state: TrainerState) -> float:
        elapsed = time.perf_counter() - self.t0
        return (state.num_input_tokens_seen - self.tokens0) / elapsed if elapsed > 0 else 0.0

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is not None:
            loss = "–" if self.loss != self.loss else f"{self.loss:.4f}"  # nan until the first logged loss
            info = f"loss {loss} · {self.tokens_per_s(state):,.0f} tok/s"
            # max_steps may be re-planned mid-run (StepBudget): the bar follows it
            self.bar.update(self.task, total=state.max_steps, completed=state.global_step, info=info)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None, **kw: Any
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
            self.on_step_end(args, state, control)  # show it now, not one step late
        shown = {k: v for k, v in logs.items() if k in _SHOWN or k.startswith(("rewards/", "eval_rewards/"))}
        if shown and "train_loss" not in logs:  # the end-of-training summary is the report's job
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            self.console.print(f"step {state.global_step}/{state.max_steps}  {text}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


class TrainerLog(TrainerCallback):
    """`<run>/trainer_log.jsonl`: one JSON line per logged step (step, max_steps, loss, eval_loss, learning_rate,
    ..., elapsed_s), flushed as it is written, for programs that watch a run (the admin console's loss curve), as
    LLaMA-Factory's trainer_log.jsonl is for its WebUI. A resumed run appends; a fresh one starts the file anew."""

    def __init__(self, run_dir: Path) -> None:
        self.path, self.t0 = run_dir / "trainer_log.jsonl", 0.0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.t0 = time.perf_counter()
        if state.global_step == 0:
            self.path.unlink(missing_ok=True)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None, **kw: Any
    ) -> None:
        # only finite numbers: JSON has no NaN, and a browser's JSON.parse refuses one
        numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, int | float) and math.isfinite(v)}
        row = {"step": state.global_step, "max_steps": state.max_steps, **numbers}
        row["elapsed_s"] = round(time.perf_counter() - self.t0, 2)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class StepBudget(TrainerCallback):
    """Fit training into `budget_s` of wall time: from the mean step time so far (the first step, which warms up
    allocators and caches, excluded), re-plan the step count after every step, and stop there.

    The planned count becomes state.max_steps, so the progress bar and its estimate follow the plan."""

    def __init__(
        self,
        budget_s: float,
        min_steps: int,
        console: Console | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget_s, self.min_steps, self.clock = budget_s, min_steps, clock
        self.console = console or Console(stderr=True)
        self.t0, self.t1, self.step1, self.cap = 0.0, 0.0, 0, 0
        self.planned: int | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.t0, self.cap = self.clock(), state.max_steps  # the cap stays: later plans may grow again

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        now = self.clock()
        if not self.step1:  # the first step of this session: the clock for the mean starts after it
            self.t1, self.step1 = now, state.global_step
            return
        step_s = (now - self.t1) / (state.global_step - self.step1)
        planned = plan_steps(self.budget_s, now - self.t0, step_s, state.global_step, self.min_steps, self.cap)
        if self.planned is None:
            self.console.print(
                f"time budget {self.budget_s:.0f} s: {step_s:.1f} s per step measured, planning {planned} steps"
            )
        previous, self.planned = self.planned, planned
        state.max_steps = planned
        if state.global_step >= planned:
            control.should_training_stop = True
        elif previous is not None and state.global_step >= previous:
            # transformers' flow callback, which runs before this one, stopped at the old plan: the new one goes on
            control.should_training_stop = False


def plan_steps(budget_s: float, elapsed_s: float, step_s: float, done: int, min_steps: int, max_steps: int) -> int:
    """Steps that end within budget_s (at least min_steps, at most max_steps), `done` of them taken already."""
    fits = done + int(max(0.0, budget_s - elapsed_s) // step_s) if step_s > 0 else max_steps
    return max(min(fits, max_steps), min_steps, done)


_SHOWN = ("loss", "eval_loss", "learning_rate", "grad_norm")


# ----------------------------------------------------------------------------- reports
def loss_points(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every log entry holding `key`, one per step (a resumed run may log a step twice)."""
    points = {int(e["step"]): float(e[key]) for e in history if key in e and "step" in e}
    return sorted(points.items())


def write_loss_plot(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        pts = loss_points(history, key)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o" if key == "eval_loss" else None, markersize=3, label=label)
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())


def peak_memory_mb() -> float:
    """CUDA max allocated when training on a GPU, else the process's peak resident memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    pts = loss_points(history, key)
    return pts[-1][1] if pts else None


class Report(TrainerCallback):
    """At the end of training: loss.png and train_report.json in the run folder; `self.report` keeps the dict."""

    def __init__(self, run_dir: Path, stage: str, summary: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> None:
        self.run_dir, self.stage, self.summary, self.extra_keys = run_dir, stage, summary, extra_keys
        self.t0, self.tokens0 = 0.0, 0
        self.report: dict[str, Any] = {}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        wall = time.perf_counter() - self.t0
        hist = state.log_history
        tokens = state.num_input_tokens_seen - self.tokens0
        self.report = {
            "stage": self.stage,
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "stopped_early": state.global_step < state.max_steps,
            "wall_s": round(wall, 2),
            "tokens_seen": state.num_input_tokens_seen,
            "tokens_this_session": tokens,
            "tokens_per_s": round(tokens / wall, 1) if wall > 0 else 0.0,
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "final_train_loss": _last(hist, "loss"),
            "final_eval_loss": _last(hist, "eval_loss"),
            "best_eval_loss": min((v for _, v in loss_points(hist, "eval_loss")), default=None),
            "metrics": {k: _last(hist, k) for k in self.extra_keys if _last(hist, k) is not None},
            "config": self.summary,
            "history": [e for e in hist if "loss" in e or "eval_loss" in e],
        }
        if not state.is_world_process_zero:  # every rank knows the report; one writes it
            return
        write_loss_plot(hist, self.run_dir / "loss.png", f"kefu {self.stage}: loss")
        write_json(self.run_dir / "train_report.json", self.report)
