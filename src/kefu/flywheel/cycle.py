"""`kefu cycle`: logs -> data -> incremental SFT (+ DPO) -> eval -> gate -> register + canary, in a run folder.

runs/cycle-<time>/ holds plan.json (the effective config and what was live when the cycle began: rerunning from
it reproduces the cycle), one folder per step's output, and state.json (the steps done, rewritten atomically after
each). `kefu cycle` resumes the newest unfinished cycle at the first step not done.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.config import KefuConfig, SourceConfig
from kefu.errors import KefuError
from kefu.flywheel.export import FILES, run_from_logs
from kefu.io import write_json
from kefu.serve import versions
from kefu.serve.db import Store

STEPS = ("export", "prepare", "sft", "dpo", "eval_live", "eval_new", "gate", "canary")
DONE = "done"


@dataclass
class Cycle:
    run_dir: Path
    cfg: KefuConfig  # the cycle's own config: data, training and eval outputs inside run_dir
    plan: dict[str, Any]
    state: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def mark(self, step: str, **result: Any) -> None:
        self.state["steps"][step] = result or {"ok": True}
        write_json(self.path("state.json"), self.state)


class GateRefused(KefuError):
    """The new version is not better than the live one: not deployed."""


# ----------------------------------------------------------------------------- plan
def live_version(store: Store) -> versions.Version | None:
    return versions.Routing.load(store).active


def cycle_config(cfg: KefuConfig, run_dir: Path, live: versions.Version | None) -> KefuConfig:
    """The base config with this cycle's data, outputs and starting adapter; absolute paths, so the plan
    reproduces the cycle from any working directory."""
    c = cfg.model_copy(deep=True)
    export = run_dir / "export"
    c.data.sources = [s.model_copy(update={"path": str(cfg.resolve(s.path))}) for s in cfg.data.sources]
    c.data.sources += [
        SourceConfig(path=str(export / FILES["sft"]), format="openai", weight=cfg.flywheel.logs_weight),
        SourceConfig(path=str(export / FILES["dpo"]), format="preference", weight=cfg.flywheel.logs_weight),
    ]
    c.data.output_dir = str(run_dir / "prepared")
    c.train.output_dir, c.train.dpo_output_dir = str(run_dir / "sft"), str(run_dir / "dpo")
    c.train.sft_adapter = str(run_dir / "sft" / "adapter")
    c.train.init_adapter = live.path if live is not None and live.kind == "adapter" else cfg.train.init_adapter
    if cfg.flywheel.sft_steps is not None:
        c.train.max_steps = cfg.flywheel.sft_steps
    c.eval.cases = str(cfg.resolve(cfg.eval.cases))
    c.eval.suites = [str(cfg.resolve(p)) for p in cfg.eval.suites]
    return c


def new_cycle(cfg: KefuConfig, store: Store, since: dt.datetime | None) -> Cycle:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = cfg.resolve(cfg.flywheel.runs_dir) / f"cycle-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    live = live_version(store)
    c = cycle_config(cfg, run_dir, live)
    plan = {
        "version": f"cycle-{stamp}", "since": since.isoformat() if since else None, "root": str(cfg.root),
        "live": None if live is None else {"name": live.name, "kind": live.kind, "path": live.path},
        "config": c.model_dump(mode="json"),
    }  # fmt: skip
    write_json(run_dir / "plan.json", plan)
    state: dict[str, Any] = {"steps": {}, "finished": False}
    write_json(run_dir / "state.json", state)
    return Cycle(run_dir, c, plan, state)


def load_cycle(run_dir: Path) -> Cycle:
    plan = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
    c = KefuConfig.model_validate({**plan["config"], "root": plan["root"]})
    return Cycle(run_dir, c, plan, state)


def unfinished(cfg: KefuConfig) -> Path | None:
    runs = sorted(cfg.resolve(cfg.flywheel.runs_dir).glob("cycle-*/state.json"))
    for state in reversed(runs):
        if not json.loads(state.read_text(encoding="utf-8")).get("finished"):
            return state.parent
    return None


def describe_plan(cfg: KefuConfig, store: Store) -> list[str]:
    """What `kefu cycle` would do now, one line per step (the names `--until` takes)."""
    live = live_version(store)
    fw, t = cfg.flywheel, cfg.train
    start = live.path if live is not None and live.kind == "adapter" else (t.init_adapter or "the base model")
    cases = f"the first {cfg.eval.limit} cases of" if cfg.eval.limit else "all of"
    folder = cfg.resolve(fw.runs_dir) / "cycle-<time>"
    return [
        f"run folder {folder}" + (f" (resumes {r.name} instead)" if (r := unfinished(cfg)) else ""),
        f"1 export     store {cfg.serve.db_url} -> export/ (SFT, DPO, review queue)",
        f"2 prepare    data.sources ({len(cfg.data.sources)}) + exported logs at weight {fw.logs_weight}",
        f"3 sft        incremental LoRA from {start}, {_steps(cfg, fw.sft_steps)}",
        f"4 dpo        when the prepared data holds preference pairs, {_dpo_steps(cfg)}",
        f"5 eval_live  the live version ({live.name if live else 'none'}) on {cases} {cfg.eval.cases}, answer path",
        "6 eval_new   the new version, the same cases",
        "7 gate       eval compare with eval.gate; stop here when it fails",
        f"8 canary     register cycle-<time> and send it {fw.canary_percent}% of traffic",
    ]


def _dpo_steps(cfg: KefuConfig) -> str:
    steps = cfg.flywheel.dpo_steps
    if steps == 0:
        return "skipped (flywheel.dpo_steps: 0)"
    return _steps(cfg, steps if steps is not None else cfg.flywheel.sft_steps)


def _steps(cfg: KefuConfig, steps: int | None) -> str:
    n = steps if steps is not None else cfg.train.max_steps
    return f"{n} steps" if n > 0 else f"{cfg.train.epochs:g} epoch(s) of the prepared data"


# ----------------------------------------------------------------------------- steps
def step_export(c: Cycle, store: Store) -> dict[str, Any]:
    since = dt.datetime.fromisoformat(c.plan["since"]) if c.plan["since"] else None
    r = run_from_logs(c.cfg, store, since)  # cumulative export folder: dedup across cycles
    out = c.path("export")
    out.mkdir(exist_ok=True)
    for name in (*FILES.values(), "export.json"):
        shutil.copyfile(r.out_dir / name, out / name)
    return {"new": r.new, "total": r.total, "duplicates": r.duplicates}


def step_prepare(c: Cycle, store: Store) -> dict[str, Any]:
    from kefu.rag.synth import prepare_with_kb

    export = c.path("export")
    # an export with nothing new leaves empty files, which are no data source
    c.cfg.data.sources = [s for s in c.cfg.data.sources if Path(s.path).parent != export or _lines(Path(s.path))]
    report = prepare_with_kb(c.cfg)  # a shop learnt from its documents keeps its KB conversations in the retrain
    return {"output_dir": str(report.output_dir)}


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0


def step_sft(c: Cycle, store: Store) -> dict[str, Any]:
    from kefu.train.sft import run_sft

    r = run_sft(c.cfg)
    c.state["adapter"] = str(r.output)
    return {"adapter": str(r.output), "train_loss": r.train_loss, "steps": r.global_step}


def step_dpo(c: Cycle, store: Store) -> dict[str, Any]:
    if not _lines(c.path("prepared") / "dpo.jsonl"):
        return {"skipped": "no preference pairs"}
    if c.cfg.flywheel.dpo_steps == 0:
        return {"skipped": "flywheel.dpo_steps is 0"}
    from kefu.train.dpo import run_dpo

    steps = c.cfg.flywheel.dpo_steps
    r = run_dpo(c.cfg if steps is None else c.cfg.model_copy(update={"train": c.cfg.train.model_copy(
        update={"max_steps": steps})}))  # fmt: skip
    c.state["adapter"] = str(r.output)
    return {"adapter": str(r.output), "train_loss": r.train_loss, "steps": r.global_step}


def _eval(c: Cycle, adapter: str | None, out: str) -> dict[str, Any]:
    from kefu.eval.runner import Target, run_eval

    run_eval(c.cfg, Target(adapter=adapter), c.path(out))
    return {"out": str(c.path(out)), "adapter": adapter}


def step_eval_live(c: Cycle, store: Store) -> dict[str, Any]:
    live = c.plan["live"]
    return _eval(c, live["path"] if live and live["kind"] == "adapter" else None, "eval-live")


def step_eval_new(c: Cycle, store: Store) -> dict[str, Any]:
    return _eval(c, c.state["adapter"], "eval-new")


def step_gate(c: Cycle, store: Store) -> dict[str, Any]:
    from kefu.eval.compare import run_compare

    result = run_compare(c.path("eval-live"), c.path("eval-new"), c.cfg.eval.gate, c.path("compare"))
    return {"passed": result.passed, "failures": result.failures}


def step_canary(c: Cycle, store: Store) -> dict[str, Any]:
    name = c.plan["version"]
    if name not in {v.name for v in versions.list_versions(store)}:  # a resumed cycle may have registered it
        versions.register(store, name, "adapter", c.state["adapter"], actor="flywheel")
    v = versions.promote(store, name, c.cfg.flywheel.canary_percent, actor="flywheel")
    return {"version": v.name, "status": v.status, "percent": v.traffic_percent}


RUNNERS: dict[str, Callable[[Cycle, Store], dict[str, Any]]] = {
    "export": step_export, "prepare": step_prepare, "sft": step_sft, "dpo": step_dpo, "eval_live": step_eval_live,
    "eval_new": step_eval_new, "gate": step_gate, "canary": step_canary,
}  # fmt: skip


def run_cycle(
    cfg: KefuConfig, store: Store, since: dt.datetime | None = None, resume: Path | None = None,
    say: Callable[[str], None] = print, until: str | None = None,
) -> Cycle:  # fmt: skip
    """Run (or resume) a cycle to its end, or only up to and including step `until` (the next call resumes after
    it); raises GateRefused when the gate says no."""
    if until is not None and until not in STEPS:
        raise KefuError(f"--until {until!r}: not a step; one of {', '.join(STEPS)}")
    run_dir = resume or unfinished(cfg)
    c = load_cycle(run_dir) if run_dir is not None else new_cycle(cfg, store, since)
    if run_dir is not None:
        say(f"resuming {run_dir} after: {', '.join(c.state['steps']) or 'nothing'} (with the config in its plan.json)")
    else:
        say(f"cycle {c.plan['version']}: run folder {c.run_dir}")
    for n, step in enumerate(STEPS, 1):
        if step in c.state["steps"]:
            continue
        say(f"[{n}/{len(STEPS)}] {step} ...")
        t0 = time.perf_counter()
        result = RUNNERS[step](c, store)
        c.mark(step, **result, seconds=round(time.perf_counter() - t0, 1))
        say(f"[{n}/{len(STEPS)}] {step} done in {_took(t0)}: {_shown(c.state['steps'][step])}")
        if step == "gate" and not result["passed"]:
            _finish(c)
            raise GateRefused("the new version is not deployed: " + "; ".join(result["failures"]))
        if step == until and step != STEPS[-1]:
            say(f"stopped after {step} (--until); `kefu cycle` resumes at {STEPS[n]}")
            return c
    _finish(c)
    return c


def _finish(c: Cycle) -> None:
    c.state["finished"] = True
    write_json(c.path("state.json"), c.state)


def _took(t0: float) -> str:
    s = round(time.perf_counter() - t0)
    return f"{s // 60}:{s % 60:02d}"


def _shown(result: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in result.items() if k != "seconds"}, ensure_ascii=False, default=str)
