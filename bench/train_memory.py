"""Peak resident memory of `kefu train`'s default plan on CPU, measured, next to kefu's own estimate.

The sample shop project (`kefu init`, `kefu data prepare`), the embedded 0.5B default model, the default train
config (LoRA on all layers, batch 4, train.memory_limit_gb 8), one optimizer step: the peak is reached in the first
step. Each precision runs as its own `kefu train` process under /usr/bin/time -v (peak RSS of the whole process).

- fp32: model.dtype=float32, the plan of a CPU without native bf16 (what auto picks there).
- auto: this machine's choice (bf16 where the CPU computes it natively).

The baseline column is the issue's measurement before planning existed (fp32, batch 4, full-vocabulary logits):
not re-run, it would take 20 GB of a machine shared with other jobs.

    flock /tmp/kefu-heavy.lock python bench/train_memory.py [--out bench/results/train_memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RUNS = {"fp32": ["model.dtype=float32"], "auto": []}
BASELINE_GB = 20.6  # issue 13: kefu train, default plan, fp32, before this change


def kefu(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "kefu", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})


def measure(name: str, project: Path) -> dict[str, Any]:
    sets = [*RUNS[name], "train.max_steps=1", f"train.output_dir=runs/{name}"]
    proc = kefu(["train", *[a for s in sets for a in ("--set", s)]], project)
    out = proc.stdout + proc.stderr
    (project / f"{name}.log").write_text(out, encoding="utf-8")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)
    plan = re.search(r"memory plan: ([^(]*?), estimated peak ([\d.]+) GB", " ".join(out.split()))
    precision = re.search(r"precision: (\S+)", out)
    return {
        "run": name, "exit_code": proc.returncode, "precision": precision.group(1) if precision else None,
        "plan": plan.group(1) if plan else None,
        "estimate_gb": float(plan.group(2)) if plan else None,
        "peak_rss_gb": round(int(rss.group(1)) * 1024 / 1e9, 2) if rss else None,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_memory.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-train-mem-") as tmp:
        project = Path(tmp) / "shop"
        for cmd in (["init", str(project)], ["data", "prepare"]):
            proc = kefu(cmd, project if cmd[0] == "data" else Path(tmp))
            if proc.returncode:
                sys.exit(f"kefu {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        results = [measure(name, project) for name in RUNS]
        for r in results:
            if r["exit_code"]:
                print((project / f"{r['run']}.log").read_text(encoding="utf-8")[-3000:])
    print(f"{'run':<6} {'precision':<10} {'baseline (issue)':>17} {'estimate':>9} {'measured peak RSS':>18}  plan")
    for r in results:
        print(f"{r['run']:<6} {r['precision'] or '-':<10} {BASELINE_GB if r['run'] == 'fp32' else '-':>17} "
              f"{r['estimate_gb'] or '-':>9} {r['peak_rss_gb'] or '-':>18}  {r['plan']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"baseline_gb": BASELINE_GB, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
