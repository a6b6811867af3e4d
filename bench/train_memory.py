"""Peak resident memory of `kefu train` on CPU, measured, next to kefu's own estimate: fp32 and bf16, short and long
rows, the plan kefu chooses and bigger ones it would reject.

The sample shop project (`kefu init`, `kefu data prepare`, with its tool conversations; train.max_seq_len 2048), the
embedded 0.5B default model, the default train config, one optimizer step. So that the measured step is the worst
case the plan is made for, each run trains on a copy of the prepared data holding only the 8 longest rows of a kind:

- short: conversations without tool calls (the chunked loss; only the LoRA layers keep activations).
- long: the tool conversations (the tool list is in their prompt; the <tool_call> token rows train, so every layer
  keeps activations and the head's logits exist at answer positions).

Plans: 'default' is what the planner chooses under the default train.memory_limit_gb (8); 'b4' keeps the configured
micro-batch 4 (memory_limit_gb 100) and 'b4+ckpt' adds gradient checkpointing, to check the estimate on plans it
rejects too. Each run is its own `kefu train` process under /usr/bin/time -v: peak RSS of the whole process, loading
the model included, so the estimate compared is the plan's or, where higher, the loading peak the plan message names.

    flock /tmp/kefu-heavy.lock python bench/train_memory.py [--runs bf16-long-default ...] [--out FILE]
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

DTYPES = {"fp32": ["model.dtype=float32"], "bf16": ["model.dtype=bfloat16"]}
PLANS = {
    "default": [],
    "b4": ["train.memory_limit_gb=100"],
    "b4+ckpt": ["train.memory_limit_gb=100", "train.gradient_checkpointing=true"],
}
RUNS = [  # fp32-long-b4 is left out: ~20 GB on a 23 GiB machine shared with other jobs
    "fp32-short-default", "bf16-short-default", "fp32-long-default", "bf16-long-default",
    "fp32-short-b4", "bf16-long-b4", "bf16-long-b4+ckpt", "fp32-long-b4+ckpt",
]  # fmt: skip
COMMON = ["train.max_steps=1", "train.max_seq_len=2048"]
LONGEST = 8


def kefu(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "kefu", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})


def write_subsets(project: Path) -> dict[str, int]:
    """prepared-short / prepared-long: the LONGEST longest rows without / with tool calls; their longest lengths."""
    from kefu.answer.model import load_tokenizer
    from kefu.config.load import load_config
    from kefu.data.schema import Conversation
    from kefu.train import common, sft

    cfg = load_config(project / "kefu.yaml", ["train.max_seq_len=2048"])
    rows = common.read_prepared(cfg, "sft.jsonl", Conversation)
    lines = [ln for ln in (cfg.resolve(cfg.data.output_dir) / "sft.jsonl").read_text("utf-8").splitlines() if ln]
    tokenizer, system = load_tokenizer(cfg.model, cfg.root), common.default_system(cfg)
    lengths = [len(r["input_ids"]) for r in sft.encode(tokenizer, rows, cfg, system)]
    longest = {}
    for kind, tools in (("short", False), ("long", True)):
        picked = [i for i, (conv, _) in enumerate(rows) if any(t.tool_calls for t in conv.turns) == tools]
        picked = sorted(picked, key=lambda i: -lengths[i])[:LONGEST]
        out = project / f"prepared-{kind}"
        out.mkdir()
        (out / "sft.jsonl").write_text("".join(lines[i] + "\n" for i in picked), encoding="utf-8")
        longest[kind] = lengths[picked[0]]
    return longest


def measure(name: str, project: Path) -> dict[str, Any]:
    dtype, kind, plan = name.split("-", 2)
    sets = [*COMMON, *DTYPES[dtype], *PLANS[plan], f"data.output_dir=prepared-{kind}", f"train.output_dir=runs/{name}"]
    proc = kefu(["train", *[a for s in sets for a in ("--set", s)]], project)
    out = proc.stdout + proc.stderr
    (project / f"{name}.log").write_text(out, encoding="utf-8")
    flat = " ".join(out.split())
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)
    found = re.search(r"memory plan: [^:]*: ([^(]*?), estimated peak ([\d.]+) GB for samples of up to (\d+)", flat)
    loading = re.search(r"loading the model peaked at ([\d.]+) GB", flat)
    estimate = float(found.group(2)) if found else None
    process = max(estimate, float(loading.group(1))) if estimate and loading else estimate
    peak = round(int(rss.group(1)) * 1024 / 1e9, 2) if rss else None
    return {
        "run": name, "dtype": dtype, "rows": kind, "plan_asked": plan, "exit_code": proc.returncode,
        "plan": found.group(1) if found else None, "max_tokens": int(found.group(3)) if found else None,
        "estimate_gb": estimate, "loading_gb": float(loading.group(1)) if loading else None,
        "process_estimate_gb": process, "peak_rss_gb": peak,
        "estimate_over_peak": round(process / peak, 2) if process and peak else None,
    }  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    head = "| run | tokens | plan | estimate GB | measured peak RSS GB | estimate / measured |"
    lines = [head, "|---|---:|---|---:|---:|---:|"]
    for r in results:
        est = f"{r['estimate_gb']}" + (f" (loading {r['loading_gb']})" if r["loading_gb"] else "")
        lines.append(f"| {r['run']} | {r['max_tokens']} | {r['plan']} | {est} | {r['peak_rss_gb']} | "
                     f"{r['estimate_over_peak']} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", default=RUNS, choices=RUNS)
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_memory.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kefu-train-mem-") as tmp:
        project = Path(tmp) / "shop"
        for cmd in (["init", str(project)], ["data", "prepare"]):
            proc = kefu(cmd, project if cmd[0] == "data" else Path(tmp))
            if proc.returncode:
                sys.exit(f"kefu {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        write_subsets(project)
        results = []
        for name in args.runs:
            results.append(measure(name, project))
            print(json.dumps(results[-1]), flush=True)
            if results[-1]["exit_code"]:
                print((project / f"{name}.log").read_text(encoding="utf-8")[-3000:])
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"longest_rows": LONGEST, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
