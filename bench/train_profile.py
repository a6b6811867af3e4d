"""Where a fast-path LoRA step's time and memory go, on the GPU: forward / backward / optimizer times, static and
peak memory, and (with `--profile`) the CUDA kernel time per step grouped into GEMMs, attention, copies and the rest.

    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 [--keep-gate-up N] [--profile]
    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 --gemms   # the fused products alone, K padded or not

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


def gemm_table(size: str, tokens: int) -> None:
    """The 7B layer's fused products alone (cuBLAS through torch.mm, random bf16): the forward [x | xA^T] @ w_ext^T,
    the backward dy @ w_ext and the B gradients' dy^T @ xA^T, with K = in (no adapter), in + R (kefu's layout) and
    in + R rounded up to 64 and 128, at the step's row counts (attention: all tokens; MLP: one 256 MiB chunk)."""
    import train_speed as ts

    cfg = ts._anchor().qwen25_config(size)
    hid, inter, d = cfg.hidden_size, cfg.intermediate_size, cfg.hidden_size // cfg.num_attention_heads
    mlp_rows = max(256, 256 * 2**20 // (4 * inter) // 256 * 256)
    groups = [("qkv", tokens, hid, 48, hid + 2 * cfg.num_key_value_heads * d), ("o", tokens, hid, 16, hid),
              ("gate_up", mlp_rows, hid, 32, 2 * inter), ("down", mlp_rows, inter, 16, hid)]  # fmt: skip
    print("| group | M | K | N | forward TFLOP/s | dx TFLOP/s | dB ms |")
    print("|---|---|---|---|---|---|---|")
    for name, m, k_in, r, n in groups:
        for k in sorted({k_in, k_in + r, -(-(k_in + r) // 64) * 64, -(-(k_in + r) // 128) * 128}):
            fwd, bwd, db = _product_ms(m, k_in, k, n)
            flop = 2 * m * k * n
            print(f"| {name} | {m} | {k} | {n} | {flop / fwd / 1e9:.0f} | {flop / bwd / 1e9:.0f} | {db:.3f} |")


def _product_ms(m: int, k_in: int, k: int, n: int) -> tuple[float, float, float]:
    """Median milliseconds of ext @ w^T, dy @ w and dy^T @ ext[:, k_in:] (0 when K has no adapter columns)."""
    import torch
    from triton.testing import do_bench

    ext, w, dy = (torch.randn(a, b, device="cuda", dtype=torch.bfloat16) for a, b in ((m, k), (n, k), (m, n)))
    xa = ext[:, k_in:]
    fwd = do_bench(lambda: torch.mm(ext, w.t()), warmup=25, rep=100, return_mode="median")
    bwd = do_bench(lambda: torch.mm(dy, w), warmup=25, rep=100, return_mode="median")
    db = do_bench(lambda: dy.t() @ xa, warmup=25, rep=100, return_mode="median") if k > k_in else 0.0
    return fwd, bwd, db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size")
    ap.add_argument("batch", type=int)
    ap.add_argument("seqlen", type=int)
    ap.add_argument("--keep-gate-up", type=int, default=None, help="FastOptions.keep_gate_up_layers (default: auto)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--gemms", action="store_true", help="time the fused products alone (gemm_table)")
    a = ap.parse_args()
    if a.gemms:
        gemm_table(a.size, a.batch * a.seqlen)
        return
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
