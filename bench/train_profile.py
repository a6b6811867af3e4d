"""Where a fast-path LoRA step's time and memory go, on the GPU: forward / backward / optimizer times, static and
peak memory, and (with `--profile`) the CUDA kernel time per step grouped into GEMMs, attention, copies and the rest.

    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 [--keep-gate-up N] [--profile]

The 2026-12-04 7B profile in bench/RESULTS.md came from this (434 ms of GEMMs, 187 ms of copies each way, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed_step(model: Any, opt: Any, batch: dict[str, Any]) -> tuple[list[float], int]:
    """(forward, backward, optimizer) milliseconds of one step, and the peak memory after its forward."""
    import torch

    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    ev[0].record()
    loss = model(**batch).loss
    ev[1].record()
    fwd_peak = torch.cuda.max_memory_allocated()
    loss.backward()
    ev[2].record()
    opt.step()
    opt.zero_grad(set_to_none=True)
    ev[3].record()
    torch.cuda.synchronize()
    return [ev[i].elapsed_time(ev[i + 1]) for i in range(3)], fwd_peak


def category(name: str) -> str:
    low = name.lower()
    if "memcpy" in low or "memset" in low:
        return name
    if any(k in low for k in ("gemm", "cutlass", "sm90_xmma", "nvjet", "cublas")):
        return "gemm"
    if any(k in low for k in ("flash", "cudnn", "fmha", "attn")):
        return "attention"
    if "triton" in low or low.startswith("_"):
        return "triton: " + name[:50]
    return "other: " + name[:60]


def kernel_table(model: Any, opt: Any, batches: list[dict[str, Any]], steps: int = 2) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            timed_step(model, opt, batches[i % len(batches)])
    per_name: dict[str, float] = defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            per_name[category(e.name)] += e.device_time / 1000 / steps
    print(f"CUDA kernel milliseconds per step (total {sum(per_name.values()):.1f}):")
    for name, ms in sorted(per_name.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {ms:8.2f}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size")
    ap.add_argument("batch", type=int)
    ap.add_argument("seqlen", type=int)
    ap.add_argument("--keep-gate-up", type=int, default=None, help="FastOptions.keep_gate_up_layers (default: auto)")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    import torch
    import train_batches as tb
    import train_speed as ts

    from kefu.train.fast import FastOptions, patch_model

    model = ts._peft_model(a.size)
    patch_model(model, FastOptions(keep_gate_up_layers=a.keep_gate_up))
    batches = tb.random_batches(a.batch, a.seqlen, model.config.vocab_size)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    model.train()
    for i in range(3):
        timed_step(model, opt, batches[i % 4])
    torch.cuda.reset_peak_memory_stats()
    static = torch.cuda.memory_allocated()
    runs = [timed_step(model, opt, batches[i % 4]) for i in range(5)]
    (fwd, bwd, step_opt), fwd_peak = sorted(runs, key=lambda r: sum(r[0]))[2]
    print(json.dumps(dict(
        size=a.size, keep=a.keep_gate_up, fwd_ms=round(fwd, 1), bwd_ms=round(bwd, 1), opt_ms=round(step_opt, 1),
        tok_s=round(a.batch * a.seqlen / ((fwd + bwd + step_opt) / 1000)), static_gib=round(static / 2**30, 2),
        fwd_peak_gib=round(fwd_peak / 2**30, 2), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
    )), flush=True)  # fmt: skip
    if a.profile:
        kernel_table(model, opt, batches)


if __name__ == "__main__":
    main()
