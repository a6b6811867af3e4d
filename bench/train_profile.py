"""Where a fast-path LoRA step's time and memory go, on the GPU: forward / backward / optimizer times, static and
peak memory, and (with `--profile`) the CUDA kernel time per step grouped into GEMMs, attention, copies and the rest.

    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 [--keep-gate-up N] [--profile]
    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 --gemms        # the fused products alone, K padded or not
    PYTHONPATH=src python3 bench/train_profile.py 7b 4 2048 --chunk-rows   # the MLP products at several chunk sizes

`--profile` also splits the kernel time by phase of the step (forward, the recomputations, each half's backward,
loss, optimizer; ranges put around the fast path's methods here, not in the library) and by kind (base-weight
products with their TFLOP/s, the adapters' thin products, attention, Triton kernels, torch's own kernels, host
copies). The 2026-12-04 7B profile in bench/RESULTS.md came from this (434 ms of GEMMs, 187 ms of copies each way).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed_step(model: Any, opt: Any, batch: dict[str, Any], label_opt: bool = False) -> tuple[list[float], int]:
    """(forward, backward, optimizer) milliseconds of one step, and the peak memory after its forward."""
    import contextlib

    import torch
    from torch.profiler import record_function

    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    ev[0].record()
    loss = model(**batch).loss
    ev[1].record()
    fwd_peak = torch.cuda.max_memory_allocated()
    loss.backward()
    ev[2].record()
    with record_function("kefu:optimizer") if label_opt else contextlib.nullcontext():
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
    from torch.profiler import ProfilerActivity, profile, record_function

    instrument()
    walls = []
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for i in range(steps):
            with record_function("kefu:step"):
                walls.append(sum(timed_step(model, opt, batches[i % len(batches)], label_opt=True)[0]))
    per_name: dict[str, float] = defaultdict(float)
    for e in prof.events():  # kernels only: the ranges' own GPU-side spans are left out
        if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith(("kefu:", "Optimizer.")):
            per_name[category(e.name)] += e.device_time / 1000 / steps
    print(f"CUDA kernel milliseconds per step (total {sum(per_name.values()):.1f}):")
    for name, ms in sorted(per_name.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {ms:8.2f}  {name}")
    phase_table(prof.events(), steps, sorted(walls)[len(walls) // 2])


# ----------------------------------------------------------------------------- kernel time by phase of the step
KINDS = ["base GEMM", "adapter GEMM", "attention", "triton", "torch kernels", "host copies"]


def instrument() -> None:
    """Put profiler ranges around the fast path's phases by wrapping its functions (once): the innermost range
    around a kernel's launch names its phase."""
    import torch
    from torch.profiler import record_function

    from kefu.train.fast import checkpoint, layer, patch

    fl: Any = layer.FastLayer  # Any: its methods are replaced below
    if getattr(fl, "_profiled", False):
        return
    in_mlp_backward = [False]

    def wrap(fn: Any, name: Any) -> Any:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kw: Any) -> Any:
            with record_function(name(*args) if callable(name) else name):
                return fn(*args, **kw)

        return wrapped

    def mlp_backward(*args: Any, **kw: Any) -> Any:
        in_mlp_backward[0] = True
        try:
            return _mlp_backward(*args, **kw)
        finally:
            in_mlp_backward[0] = False

    def gate_up_label(*args: Any) -> str:  # (self, h, a_gu, chunk, gu): gu None = the product runs
        if not in_mlp_backward[0]:
            return "kefu:mlp forward"
        return "kefu:mlp recompute (norm, gate/up)" if args[4] is None else "kefu:mlp recompute (norm)"

    fl.attn_block = wrap(fl.attn_block, lambda *a: f"kefu:attn {'recompute' if torch.is_grad_enabled() else 'forward'}")
    fl.mlp_forward = wrap(fl.mlp_forward, "kefu:mlp forward")
    _mlp_backward = wrap(fl.mlp_backward, "kefu:mlp backward")
    fl.mlp_backward = mlp_backward
    fl._gate_up_forward = wrap(fl._gate_up_forward, gate_up_label)
    checkpoint.layer_backward = wrap(checkpoint.layer_backward, "kefu:attn backward (autograd)")
    patch.linear_cross_entropy = wrap(patch.linear_cross_entropy, "kefu:loss (lm_head + CE)")
    fl._profiled = True


def kind(kernel: str, op: Any) -> tuple[str, float]:
    """(kind, FLOPs) of one kernel launched under `op` (the nearest aten op above it, for a product's shapes)."""
    low = kernel.lower()
    if "memcpy" in low and ("htod" in low or "dtoh" in low):
        return "host copies", 0.0
    if any(k in low for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas")):
        mkn = _mkn(op)
        return ("base GEMM" if mkn and min(mkn) >= 512 else "adapter GEMM"), (2.0 * _prod(mkn) if mkn else 0.0)
    if any(k in low for k in ("flash", "cudnn", "fmha", "attn", "sdpa")):
        return "attention", 0.0
    if low.startswith("_") or "triton" in low:
        return "triton", 0.0
    return "torch kernels", 0.0


def _prod(v: tuple[int, int, int]) -> float:
    return float(v[0]) * v[1] * v[2]


def _mkn(op: Any) -> tuple[int, int, int] | None:
    if op is None:
        return None
    shapes = [s for s in op.input_shapes if isinstance(s, list)]
    pair = shapes[1:3] if "addmm" in op.name or "baddbmm" in op.name else shapes[0:2]
    if len(pair) != 2 or len(pair[0]) != 2 or len(pair[1]) != 2 or pair[0][1] != pair[1][0]:
        return None
    return pair[0][0], pair[0][1], pair[1][1]


def _ancestry(e: Any) -> tuple[str, Any]:
    """(the innermost kefu: range above e, the nearest aten matrix product above e)."""
    phase, op, node = None, None, e
    while node is not None and phase is None:
        if op is None and node.name.startswith("aten::") and "mm" in node.name:
            op = node
        if node.name.startswith("kefu:") and node.name != "kefu:step":
            phase = node.name[5:]
        node = node.cpu_parent
    return phase or "other (embedding, final norm, ...)", op


def phase_table(events: Any, steps: int, wall_ms: float) -> None:
    """Kernel ms per step by phase and kind. Triton kernels are launched through the driver API, which the profiler
    mostly does not tie to the Python range around the launch: most of them land in "other" (the per-kernel table
    above names them)."""
    ms: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    flops: dict[str, float] = defaultdict(float)
    for e in events:
        if not getattr(e, "kernels", None):
            continue
        phase, op = _ancestry(e)
        for k in e.kernels:
            what, f = kind(k.name, op)
            ms[phase][what] += k.duration / 1000 / steps
            if what == "base GEMM":
                flops[phase] += f / steps
    print(f"\nKernel ms per step by phase (profiled step {wall_ms:.1f} ms wall; host copies run on side streams):")
    print("| phase | " + " | ".join(KINDS) + " | compute total | base GEMM TFLOP/s |")
    print("|---|" + "---|" * (len(KINDS) + 2))
    total: dict[str, float] = defaultdict(float)
    for phase in sorted(ms, key=lambda p: -sum(v for k, v in ms[p].items() if k != "host copies")):
        row = ms[phase]
        for k, v in row.items():
            total[k] += v
        compute = sum(v for k, v in row.items() if k != "host copies")
        rate = flops[phase] / (row["base GEMM"] / 1000) / 1e12 if row["base GEMM"] else 0.0
        print(f"| {phase} | " + " | ".join(f"{row[k]:.1f}" for k in KINDS) + f" | {compute:.1f} | {rate:.0f} |")
    compute = sum(v for k, v in total.items() if k != "host copies")
    rate = sum(flops.values()) / (total["base GEMM"] / 1000) / 1e12 if total["base GEMM"] else 0.0
    print("| **all** | " + " | ".join(f"{total[k]:.1f}" for k in KINDS) + f" | {compute:.1f} | {rate:.0f} |")
    print(json.dumps(dict(phase_ms={p: {k: round(v, 2) for k, v in r.items()} for p, r in ms.items()},
                          base_gemm_tflop={p: round(f / 1e12, 2) for p, f in flops.items()},
                          wall_ms=round(wall_ms, 1))))  # fmt: skip


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


def chunk_rows_table(size: str) -> None:
    """The MLP's fused products (K padded to 64 as kefu runs them) at the row counts an MLP chunk may have: the 256 MiB
    chunk runs 7B's 8192 tokens as 3328 + 3328 + 1536; equal chunks would be 2 x 4096 or 3 x 2816 (tried 2026-12-07
    on an H100, with no gain: bench/RESULTS.md)."""
    import train_speed as ts

    cfg = ts._anchor().qwen25_config(size)
    hid, inter = cfg.hidden_size, cfg.intermediate_size
    print("| group | M | K | N | forward TFLOP/s | dx TFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name, k_in, n in (("gate_up", hid, 2 * inter), ("down", inter, hid)):
        k = -(-(k_in + 16) // 64) * 64
        for m in (1536, 2560, 2816, 3328, 4096, 8192):
            fwd, bwd, _ = _product_ms(m, k, k, n)
            flop = 2 * m * k * n
            print(f"| {name} | {m} | {k} | {n} | {flop / fwd / 1e9:.0f} | {flop / bwd / 1e9:.0f} |", flush=True)


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
    ap.add_argument("--mlp-chunk-mib", type=int, default=None, help="FastOptions.mlp_chunk_bytes in MiB")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--gemms", action="store_true", help="time the fused products alone (gemm_table)")
    ap.add_argument("--chunk-rows", action="store_true", help="time the MLP products by chunk rows")
    a = ap.parse_args()
    if a.gemms or a.chunk_rows:
        gemm_table(a.size, a.batch * a.seqlen) if a.gemms else chunk_rows_table(a.size)
        return
    import torch
    import train_batches as tb
    import train_speed as ts

    from kefu.train.fast import FastOptions, patch_model

    model = ts._peft_model(a.size)
    chunk = {} if a.mlp_chunk_mib is None else {"mlp_chunk_bytes": a.mlp_chunk_mib * 2**20}
    patch_model(model, FastOptions(keep_gate_up_layers=a.keep_gate_up, **chunk))
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
