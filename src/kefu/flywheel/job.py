"""A training job the admin console starts, run as its own process: `python -m kefu.flywheel.job JOB_DIR`.

The gateway (kefu.serve.jobs) writes JOB_DIR/plan.json (the kind, the settings, the validated config with its
root, the live model version) and starts this process with stdout and stderr going to JOB_DIR/log.txt, so the
gateway stays responsive and a cancel is a signal to one process group. Kinds:

- `train`: prepare -> SFT -> eval of the new adapter -> eval of the live version -> compare (eval.gate), each
  through the same run_* function its CLI command calls, with outputs inside JOB_DIR;
- `cycle`: `kefu cycle` (kefu.flywheel.cycle.run_cycle), resuming the newest unfinished cycle as the CLI does.

What a watcher reads: JOB_DIR/events.jsonl (progress of every task via kefu.progress.report_to, step starts and
ends, where outputs go), JOB_DIR/state.json (status running/done/refused/failed, steps done, error), and the
trainer's own `<train run>/trainer_log.jsonl` for the loss curve.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.io import write_json
from kefu.progress import progress, report_to


class Job:
    def __init__(self, job_dir: Path) -> None:
        self.dir = job_dir
        self.plan = json.loads((job_dir / "plan.json").read_text(encoding="utf-8"))
        self.cfg = KefuConfig.model_validate({**self.plan["config"], "root": self.plan["root"]})
        self.state: dict[str, Any] = {"status": "running", "steps": {}, "error": None}
        self._events = (job_dir / "events.jsonl").open("a", encoding="utf-8")

    def emit(self, kind: str, **data: Any) -> None:
        self._events.write(json.dumps({"t": round(time.time(), 3), "type": kind, **data}, default=str) + "\n")
        self._events.flush()

    def save(self) -> None:
        write_json(self.dir / "state.json", self.state)

    def step(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.emit("step", step=name, status="start")
        print(f"== {name}", flush=True)
        result = fn()
        self.state["steps"][name] = result
        self.save()
        self.emit("step", step=name, status="done", result=result)
        return result


# ----------------------------------------------------------------------------- kind: train
def run_train_job(job: Job) -> str:
    cfg, d = job.cfg, job.dir
    job.emit("paths", train=[str(d / "sft")], eval_new=str(d / "eval-new"), eval_live=str(d / "eval-live"),
             compare=str(d / "compare"))  # fmt: skip
    job.step("prepare", lambda: prepare(cfg))
    trained = job.step("train", lambda: train(cfg))
    job.step("eval_new", lambda: evaluate(cfg, {"kind": "adapter", "path": trained["adapter"]}, d / "eval-new"))
    job.step("eval_live", lambda: evaluate(cfg, job.plan.get("live"), d / "eval-live"))
    verdict = job.step("compare", lambda: compare(cfg, d / "eval-live", d / "eval-new", d / "compare"))
    return "done" if verdict["passed"] else "refused"


def prepare(cfg: KefuConfig) -> dict[str, Any]:
    """What `kefu data prepare` does: knowledge-base synthesis when enabled, then read, mask, clean, split."""
    from kefu.rag.synth import prepare_with_kb

    with progress() as bar:
        report = prepare_with_kb(cfg, bar)  # type: ignore[arg-type]
    return {"output_dir": str(report.output_dir)}


def train(cfg: KefuConfig) -> dict[str, Any]:
    from kefu.train.sft import run_sft

    r = run_sft(cfg)
    return {"adapter": str(r.output), "steps": r.global_step, "train_loss": r.train_loss, "eval_loss": r.eval_loss}


def evaluate(cfg: KefuConfig, version: dict[str, Any] | None, out: Path) -> dict[str, Any]:
    """Eval a model version as serving runs it: an adapter on the base model, a merged model, or the base."""
    from kefu.eval.runner import Target, run_eval

    kind, path = (version or {}).get("kind", "base"), (version or {}).get("path")
    if kind == "upstream":
        raise KefuError("the live version is served by an upstream server: evaluate it with `kefu eval --url`")
    target = Target(adapter=path) if kind == "adapter" else Target(model=path) if kind == "merged" else Target()
    result = run_eval(cfg, target, out)
    return {"out": str(out), "version": version, "cases": result.data["run"].get("cases")}


def compare(cfg: KefuConfig, live: Path, new: Path, out: Path) -> dict[str, Any]:
    from kefu.eval.compare import run_compare

    result = run_compare(live, new, cfg.eval.gate, out)
    return {"passed": result.passed, "failures": result.failures}


# ----------------------------------------------------------------------------- kind: cycle
def run_cycle_job(job: Job) -> str:
    from kefu.flywheel.cycle import STEPS, GateRefused, new_cycle, run_cycle, unfinished
    from kefu.serve.db import Store

    cfg = job.cfg
    store = Store(cfg.serve.db_url, cfg.root)
    run_dir = unfinished(cfg) or new_cycle(cfg, store, None).run_dir
    job.emit("paths", cycle=str(run_dir), train=[str(run_dir / "sft"), str(run_dir / "dpo")],
             eval_new=str(run_dir / "eval-new"), eval_live=str(run_dir / "eval-live"),
             compare=str(run_dir / "compare"))  # fmt: skip

    def say(text: str) -> None:
        print(text, flush=True)  # run_cycle says "[3/8] sft ..." when a step starts, "[3/8] sft done in 0:42: {...}"
        if (m := _STEP_LINE.match(text)) and m["step"] in STEPS:
            job.emit("step", step=m["step"], status="start" if m["what"] == "..." else "done")

    try:
        c = run_cycle(cfg, store, None, run_dir, say=say)
    except GateRefused as e:
        job.state["error"] = str(e)
        return "refused"
    job.state["steps"] = c.state["steps"]
    return "done"


_STEP_LINE = re.compile(r"^\[\d+/\d+\] (?P<step>\w+) (?P<what>\.\.\.$|done in )")

KINDS: dict[str, Callable[[Job], str]] = {"train": run_train_job, "cycle": run_cycle_job}


def main(job_dir: str) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    job = Job(Path(job_dir))
    report_to(lambda p: job.emit("progress", **p))
    job.save()
    try:
        job.state["status"] = KINDS[job.plan["kind"]](job)
    except Exception as e:  # the job's own record says why; the traceback goes to log.txt
        logging.getLogger("kefu.job").exception("job failed")
        job.state["status"], job.state["error"] = "failed", f"{type(e).__name__}: {e}"
    job.save()
    job.emit("end", status=job.state["status"])
    return 0 if job.state["status"] in ("done", "refused") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
