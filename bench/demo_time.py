"""`kefu demo`'s first run, end to end, on the CPU kinds shops have: wall time per phase and peak RSS.

Each run is a true first run: a fresh demo folder and an empty model cache (model.cache_dir in a temp folder), so
the default model is assembled from its packages and converted, as for a new user. Runs as a subprocess under
/usr/bin/time -v (peak RSS of the whole demo: eval, training and answers all happen in that one process).

Kinds:
- native: this machine as it is (model.dtype auto: bf16 where the CPU computes it natively).
- avx2: a 2-core AVX2 machine without bf16, emulated on a newer CPU: ATEN_CPU_CAPABILITY=avx2 (torch's kernels
  limited to AVX2) plus kefu's non-bf16 plan (model.dtype=float32, what auto picks on such a CPU).

The baseline column is the issue's measurement of the demo before this change (AVX2, fp32 forced, 2 cores): it is
not re-run here (24.5 minutes).

    flock /tmp/kefu-heavy.lock python bench/demo_time.py --kind native [--kind avx2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS: dict[str, tuple[dict[str, str], list[str]]] = {
    "native": ({}, []),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, ["model.dtype=float32"]),
}
# Issue 13, the demo before this change on 2 AVX2 cores with --set model.dtype=float32 (seconds).
BASELINE_AVX2 = {"prepare": 1, "before": 190, "train": 1223, "after": 52, "total": 1470}


def cpu_line() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags {' '.join(shown)}"


def run_demo(kind: str, work: Path) -> dict[str, Any]:
    env_extra, sets = KINDS[kind]
    out, cache = work / f"demo-{kind}", work / f"cache-{kind}"
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "kefu", "demo", "--out", str(out)]
    for s in [*sets, f"model.cache_dir={cache}"]:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env_extra}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / f"demo-{kind}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = int(rss.group(1)) * 1024 / 1e9 if rss else None
    result: dict[str, Any] = {"kind": kind, "env": env_extra, "sets": sets, "exit_code": proc.returncode,
                              "wall_s": round(wall, 1), "process_peak_rss_gb": peak}  # fmt: skip
    if (out / "demo.json").is_file():
        result |= json.loads((out / "demo.json").read_text(encoding="utf-8"))
    return result


def table(results: list[dict[str, Any]]) -> str:
    phases = ["prepare", "before", "train", "after", "report", "total"]
    head = ["phase (s)", "baseline avx2 fp32 (issue)"] + [r["kind"] for r in results]
    rows = [[p, str(BASELINE_AVX2.get(p, "-"))] + [str(r.get("timings_s", {}).get(p, "-")) for r in results]
            for p in phases]  # fmt: skip
    for p in phases[:-1]:
        rows.append([f"peak RSS after {p} (GB)", "-"] + [str(r.get("peak_rss_gb", {}).get(p, "-")) for r in results])
    rows.append(["process wall", "-"] + [str(r["wall_s"]) for r in results])
    rows.append(["process peak RSS (GB)", "-"] + [f"{r['process_peak_rss_gb'] or 0:.2f}" for r in results])
    rows.append(["train steps", "72"] + [str(r.get("train_steps", "-")) for r in results])
    rows.append(["identity learned", "-"] + [str(r.get("identity_learned", "-")) for r in results])
    for name in ("policy-fact accuracy", "identity consistency"):
        cells = [r.get("metrics_before_after", {}).get(name) for r in results]
        rows.append([f"{name} before->after", "-"] + [f"{c[0]:.2f}->{c[1]:.2f}" if c else "-" for c in cells])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", action="append", choices=sorted(KINDS), help="CPU kind(s) to run; default both.")
    ap.add_argument("--out", type=Path, default=Path("bench/results/demo_time.json"))
    ap.add_argument("--work", type=Path, help="Keep demo folders and logs here (default: a temp folder, removed).")
    args = ap.parse_args()
    # Kinds run one at a time (each needs the machine to itself) keep the other kinds' earlier results.
    old = json.loads(args.out.read_text(encoding="utf-8"))["results"] if args.out.is_file() else []
    results = {r["kind"]: r for r in old}
    with tempfile.TemporaryDirectory(prefix="kefu-demo-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for kind in args.kind or ["native", "avx2"]:
            results[kind] = r = run_demo(kind, work)
            print(f"{kind}: exit {r['exit_code']}, {r['wall_s']} s", flush=True)
            if r["exit_code"] not in (0, 1):  # 1: the demo ran but identity was not learned
                print((work / f"demo-{kind}.log").read_text(encoding="utf-8")[-3000:])
    print(f"machine: {cpu_line()} (Python {platform.python_version()})")
    print(table(list(results.values())))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": cpu_line(), "results": list(results.values())}
    args.out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
