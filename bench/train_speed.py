"""LoRA SFT step speed and memory: transformers+peft (anchor), Unsloth (anchor, when its wheels are installed) and
kefu's fast path, side by side on random-weight Qwen2.5 shapes, plus customer-service lengths in every form the
anchors' users train them (padding-free rows, padded batches of the same token budget; `train_batches.SCENARIOS`)
and a numerics check. Every measurement runs in its own process, so peak memory is its own.

    python bench/train_speed.py lengths                       # here: sample-shop token lengths -> .gpu/cs_lengths.json
    python bench/train_speed.py all --out results.json        # on the GPU: everything, table last
    python bench/train_speed.py one kefu 0.5b 8 2048 cs-flat  # one measurement, one JSON line

Unsloth runs only in a child process whose PYTHONPATH is --unsloth-site (its wheels installed there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_batches as tb

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT / ".gpu" / "anchors"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHAPES = [("0.5b", 8), ("1.5b", 8), ("7b", 4)]


# ----------------------------------------------------------------------------- models (GPU, one per process)
def _anchor() -> Any:
    sys.path.insert(0, str(ANCHORS))
    import hf_peft_baseline

    return hf_peft_baseline


def _peft_model(size: str, dropout: float = 0.0, attn: str | None = None, seed: int = 0) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = _anchor().qwen25_config(size)
    if attn:
        cfg._attn_implementation = attn
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=dropout, target_modules=TARGETS, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def register_flash_varlen() -> str:
    """transformers' padding-free path (`flash_attention_2` fed by DataCollatorWithFlattening) needs the flash-attn
    package, which the GPU image lacks; torch ships the same flash kernel as `varlen_attn`. This registers it through
    transformers' public AttentionInterface, reading the collator's cu_seq_lens_q / max_length_q as flash_attention_2
    does. With no mask function registered for the name, transformers builds no mask (none is needed)."""
    import inspect

    from torch.nn.attention.varlen import varlen_attn
    from transformers import AttentionInterface

    params = set(inspect.signature(varlen_attn).parameters)

    def flash_varlen(module: Any, q: Any, k: Any, v: Any, mask: Any, scaling: float | None = None, **kw: Any) -> Any:
        q, k, v = (x[0].transpose(0, 1) for x in (q, k, v))  # [1, heads, T, D] -> [T, heads, D]
        opts: dict[str, Any] = dict(scale=scaling)
        if "enable_gqa" in params:
            opts["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        opts.update(is_causal=True) if "is_causal" in params else opts.update(window_size=(-1, 0))
        cu, n = kw["cu_seq_lens_q"], kw["max_length_q"]
        out: Any = varlen_attn(q, k, v, cu, cu, n, n, **opts)
        return out[None], None

    AttentionInterface.register("torch_varlen", flash_varlen)  # a name with "flash" in it means FA2/3/4 to HF
    return "torch_varlen"


def _unsloth_model(size: str, seqlen: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(f"/tmp/q{size}", max_seq_length=seqlen, dtype=torch.bfloat16,
                                                 load_in_4bit=False)  # fmt: skip
    return FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0, bias="none",
                                            target_modules=TARGETS, use_gradient_checkpointing="unsloth",
                                            random_state=0)  # fmt: skip


def _loop(model: Any, batches: list[dict[str, Any]], steps: int, warmup: int, real_tokens: list[int]) -> dict[str, Any]:
    import torch

    from kefu.train.fast.patch import causal_lm

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, fused=True)
    model.train()
    times, losses, toks = [], [], []
    for step in range(warmup + steps):
        b = batches[step % len(batches)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
            toks.append(real_tokens[step % len(batches)])
        losses.append(loss.item())
        assert math.isfinite(losses[-1]), losses
        if step == warmup - 1:  # steady state from here (kefu captures its CUDA graphs during warm-up)
            warm_peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
    # The anchors' definition: tokens over the median step (here per step, as real token counts may differ).
    rates = sorted((n / t for n, t in zip(toks, times, strict=True)), reverse=True)
    # CUDA graphs' scratch memory is free to the allocator's counters between replays, yet replays use it: count it.
    # Whole run: the warm-up's peak too, where a capture's scratch is counted both as allocated and in the pool.
    graphs = getattr(getattr(causal_lm(model), "_kefu_fast", None), "graphs", None)
    pool = graphs.pool_bytes() if graphs is not None else 0
    steady = torch.cuda.max_memory_allocated()
    return dict(step_s=round(sorted(times)[len(times) // 2], 4), tok_s=round(rates[len(rates) // 2]),
                mean_tok_s=round(sum(toks) / sum(times)), first_loss=round(losses[0], 4),
                real_tok_step=round(sum(toks) / len(toks)),
                peak_gib=round((steady + pool) / 2**30, 2), graph_pool_gib=round(pool / 2**30, 2),
                peak_gib_whole_run=round((max(steady, warm_peak) + pool) / 2**30, 2))  # fmt: skip


def measure(impl: str, size: str, batch: int, seqlen: int, scenario: str, opts: dict[str, Any]) -> dict[str, Any]:
    """One implementation on one scenario; `opts`: kefu's keep_gate_up_layers / cuda_graphs / mlp_chunk_bytes,
    lora_dropout."""
    import torch

    if impl == "unsloth" and scenario == "random":
        return _unsloth_random(size, batch, seqlen)
    torch.cuda.reset_peak_memory_stats()
    dropout = opts.get("lora_dropout", 0.0)
    if impl == "unsloth":
        model = _unsloth_model(size, seqlen)
    elif impl == "hf":
        model = _peft_model(size, dropout, register_flash_varlen() if scenario == "cs-flat" else None)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        from kefu.train.fast import FastOptions, patch_model

        model = _peft_model(size, dropout)
        kw = {k: opts[k] for k in ("keep_gate_up_layers", "cuda_graphs", "mlp_chunk_bytes") if k in opts}
        patch_model(model, FastOptions(**kw))
    vocab = model.config.vocab_size
    if scenario == "random":
        batches, real = tb.random_batches(batch, seqlen, vocab), [batch * seqlen] * 4
    else:
        batches, real = tb.cs_batches(vocab, scenario, batch * seqlen, form=impl)
    r = _loop(model, batches, steps=8, warmup=3, real_tokens=real)
    label = impl + "".join(f"[{k}={v}]" for k, v in opts.items())
    return dict(impl=label, size=size, batch=batch, seqlen=seqlen, scenario=scenario, **r)


def _unsloth_random(size: str, batch: int, seqlen: int) -> dict[str, Any]:
    """The shared anchor script's own measurement, as given."""
    sys.path.insert(0, str(ANCHORS))
    import io
    from contextlib import redirect_stdout

    import unsloth_anchor

    buf = io.StringIO()
    with redirect_stdout(buf):
        unsloth_anchor.bench(size, batch, seqlen)
    r = json.loads(buf.getvalue().strip().splitlines()[-1])
    r.update(scenario="random")
    return r


def numerics(size: str, batch: int, seqlen: int) -> dict[str, Any]:
    """Same weights and batch through HF+peft and kefu: loss difference and LoRA gradient cosine (B made non-zero,
    else every A gradient is zero and the comparison is empty)."""
    import torch

    from kefu.train.fast import patch_model, unpatch_model

    model = _peft_model(size)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.02)
    x = tb.random_batches(batch, seqlen, model.config.vocab_size)[0]["input_ids"]

    def grads() -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        return loss.item(), torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad])

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    l_ref, g_ref = grads()
    patch_model(model)
    l_fast, g_fast = grads()
    unpatch_model(model)
    cos = torch.nn.functional.cosine_similarity(g_ref, g_fast, dim=0).item()
    rel = (g_ref - g_fast).norm().item() / g_ref.norm().item()
    return dict(impl="numerics", size=size, batch=batch, seqlen=seqlen, loss_hf=round(l_ref, 5),
                loss_kefu=round(l_fast, 5), loss_rel_diff=round(abs(l_fast - l_ref) / l_ref, 6),
                grad_cosine=round(cos, 5), grad_rel_err=round(rel, 5))  # fmt: skip


# ----------------------------------------------------------------------------- orchestration
def run_child(args: list[str], site: str | None, log: Any) -> dict[str, Any] | None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *([site] if site else [])])
    t0 = time.time()
    p = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=900)
    log.write(
        f"$ {' '.join(args)}  ({time.time() - t0:.0f}s, rc {p.returncode})\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}\n"
    )
    log.flush()
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        print(f"FAILED {' '.join(args)}: {p.stderr.strip().splitlines()[-1:] if p.stderr else ''}", flush=True)
        return None
    r = json.loads(lines[-1])
    print(json.dumps(r), flush=True)
    return r


def plan(a: argparse.Namespace, size: str, has_unsloth: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(impl, scenario, options) to measure at one size, in order: anchors first, then kefu and its variants."""
    cs = [s for s in a.scenarios if s != "random"] if size == a.cs_size else []
    anchors = [impl for impl in ("hf", "unsloth") if impl in a.impls and (impl == "hf" or has_unsloth)]
    runs: list[tuple[str, str, dict[str, Any]]] = [(impl, sc, {}) for impl in anchors for sc in ["random", *cs]]
    kefu_scenarios = ["random"] + (["cs-flat"] if "cs-flat" in cs else [])
    if "kefu" in a.impls:
        runs += [("kefu", sc, {}) for sc in kefu_scenarios]
        runs += [("kefu", sc, {"lora_dropout": p}) for p in a.kefu_dropout for sc in kefu_scenarios]
        runs += [("kefu", sc, {"cuda_graphs": g == "on"}) for g in a.kefu_graphs for sc in kefu_scenarios]
        runs += [("kefu", "random", {"keep_gate_up_layers": k}) for k in a.kefu_variants]
    return runs


def run_all(a: argparse.Namespace) -> None:
    site = a.unsloth_site if a.unsloth_site and Path(a.unsloth_site).is_dir() else None
    results: list[dict[str, Any]] = []
    out = Path(a.out)
    with open(out.with_suffix(".log"), "w") as log:
        for size, batch in [(s, dict(SHAPES)[s]) for s in a.sizes]:  # in the order asked for
            if site and "unsloth" in a.impls:  # Unsloth loads from disk: save the random weights once per size
                save = [sys.executable, str(ANCHORS / "unsloth_anchor.py"), "save", size]
                subprocess.run(save, env={**os.environ, "PYTHONPATH": site}, capture_output=True, timeout=600)
            for impl, scenario, opts in plan(a, size, site is not None):
                args = ["one", impl, size, str(batch), str(a.seqlen), scenario, "--opts", json.dumps(opts)]
                r = run_child(args, site if impl == "unsloth" else None, log)
                label = impl + "".join(f"[{k}={v}]" for k, v in opts.items())
                results.append(r or dict(impl=label, size=size, batch=batch, scenario=scenario, failed=True))
                out.write_text(json.dumps(results, indent=1))
            if a.numerics:
                r = run_child(["numerics", size, "2", str(a.seqlen)], None, log)
                results.append(r or dict(impl="numerics", size=size, failed=True))
                out.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    """Markdown: one row per measurement; each anchor's best tok/s on the same data (fixed rows, or the same CS
    lengths in any form) is what kefu's ratio columns divide by."""

    def best(impl: str, r: dict[str, Any]) -> dict[str, Any] | None:
        family = r["scenario"].split("-")[0]
        same = [x for x in results if x.get("impl") == impl and x["size"] == r["size"] and not x.get("failed")
                and x.get("scenario", "").split("-")[0] == family]  # fmt: skip
        return max(same, key=lambda x: x["tok_s"], default=None)

    print("\n| shape | batches | impl | real tok/s | real tok/step | peak GiB | vs hf best | vs Unsloth best |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("impl") == "numerics" or r.get("failed"):
            continue
        hf, us = best("hf", r), best("unsloth", r)
        vs_hf = f"{r['tok_s'] / hf['tok_s']:.2f}x" if hf else "-"
        vs_us = f"{r['tok_s'] / us['tok_s']:.2f}x" if us else "-"
        per_step = r.get("real_tok_step", r["batch"] * r["seqlen"])
        print(f"| {r['size']} | {r['scenario']} | {r['impl']} | {r['tok_s']:,} | {per_step:,} | {r['peak_gib']} | "
              f"{vs_hf} | {vs_us} |")  # fmt: skip
    print("\n" + "\n".join(f"{k}: {v}" for k, v in tb.SCENARIOS.items()))
    for r in results:
        if r.get("impl") == "numerics":
            print(f"numerics {r['size']}: " + ("FAILED" if r.get("failed") else
                  f"loss hf {r['loss_hf']} kefu {r['loss_kefu']} (rel diff {r['loss_rel_diff']}), "
                  f"LoRA grad cosine {r['grad_cosine']}, rel err {r['grad_rel_err']}"))  # fmt: skip
        elif r.get("failed"):
            print(f"FAILED: {r['impl']} {r['size']} {r.get('scenario')}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lengths")
    one = sub.add_parser("one")
    one.add_argument("impl", choices=["hf", "unsloth", "kefu"])
    one.add_argument("size")
    one.add_argument("batch", type=int)
    one.add_argument("seqlen", type=int)
    one.add_argument("scenario", choices=list(tb.SCENARIOS))
    one.add_argument(
        "--opts", default="{}", help="JSON: keep_gate_up_layers, cuda_graphs, mlp_chunk_bytes (kefu), lora_dropout"
    )
    num = sub.add_parser("numerics")
    num.add_argument("size")
    num.add_argument("batch", type=int)
    num.add_argument("seqlen", type=int)
    al = sub.add_parser("all")
    al.add_argument("--out", default="train_speed.json")
    al.add_argument("--sizes", nargs="+", default=[s for s, _ in SHAPES])
    al.add_argument("--impls", nargs="+", default=["hf", "unsloth", "kefu"])
    al.add_argument("--scenarios", nargs="+", default=list(tb.SCENARIOS), choices=list(tb.SCENARIOS))
    al.add_argument("--cs-size", default="0.5b", help="the size the customer-service scenarios run at")
    al.add_argument("--seqlen", type=int, default=2048)
    al.add_argument("--numerics", action="store_true")
    al.add_argument("--kefu-dropout", nargs="*", type=float, default=[], help="extra kefu runs: lora_dropout")
    al.add_argument("--kefu-graphs", nargs="*", choices=["on", "off"], default=[], help="extra kefu runs: cuda_graphs")
    al.add_argument("--kefu-variants", nargs="*", type=int, default=[], help="extra kefu runs: keep_gate_up_layers")
    al.add_argument("--unsloth-site", default="/tmp/site")
    a = p.parse_args()
    if a.cmd == "lengths":
        lengths = tb.cs_lengths()
        tb.LENGTHS.parent.mkdir(exist_ok=True)
        tb.LENGTHS.write_text(json.dumps(lengths))
        mean = sum(lengths) / len(lengths)
        print(f"{len(lengths)} conversations, mean {mean:.0f}, max {max(lengths)} proxy tokens -> {tb.LENGTHS}")
    elif a.cmd == "one":
        print(json.dumps(measure(a.impl, a.size, a.batch, a.seqlen, a.scenario, json.loads(a.opts))))
    elif a.cmd == "numerics":
        print(json.dumps(numerics(a.size, a.batch, a.seqlen)))
    else:
        run_all(a)


if __name__ == "__main__":
    main()
