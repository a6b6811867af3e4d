"""LoRA SFT step speed and memory: transformers+peft (anchor), Unsloth (anchor, when its wheels are installed) and
kefu's fast path, side by side on random-weight Qwen2.5 shapes, plus a customer-service-length scenario and a
numerics check. Every measurement runs in its own process, so peak memory is its own.

    python bench/train_speed.py lengths                       # here: sample-shop token lengths -> .gpu/cs_lengths.json
    python bench/train_speed.py all --out results.json        # on the GPU: everything, table last
    python bench/train_speed.py one kefu 0.5b 8 2048          # one measurement, one JSON line

Unsloth runs only in a child process whose PYTHONPATH is --unsloth-site (its wheels installed there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT / ".gpu" / "anchors"
LENGTHS = ROOT / ".gpu" / "cs_lengths.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHAPES = [("0.5b", 8), ("1.5b", 8), ("7b", 4)]


# ----------------------------------------------------------------------------- customer-service lengths (CPU)
def proxy_tokens(text: str) -> int:
    """Qwen2.5-like token count without its tokenizer: ~1.4 CJK characters per token, ~4 characters per Latin word
    piece, one token per other symbol (Qwen2.5's vocabulary averages about these on Chinese/English chat text)."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    words = re.findall(r"[A-Za-z0-9]+", text)
    other = len(re.findall(r"[^\sA-Za-z0-9\u3400-\u9fff\uf900-\ufaff]", text))
    return math.ceil(cjk / 1.4) + sum(math.ceil(len(w) / 4) for w in words) + other


def chatml_length(system: str, turns: Sequence[tuple[str, str]]) -> int:
    """Tokens of the ChatML rendering: <|im_start|>role\\n ... <|im_end|>\\n is 4 tokens around each message."""
    msgs = [("system", system), *turns]
    return sum(4 + proxy_tokens(role) + proxy_tokens(text) for role, text in msgs)


def cs_lengths() -> list[int]:
    from kefu.config import PersonaConfig
    from kefu.data.formats import read_records
    from kefu.data.persona import system_prompt
    from kefu.data.schema import Conversation

    data = ROOT / "src" / "kefu" / "samples" / "shop" / "data"
    default_system = system_prompt(PersonaConfig())
    out = []
    for path in [*sorted(data.glob("sft_*")), data / "chatlog.csv"]:
        for rec in read_records(path, on_problem=lambda p: None):
            if isinstance(rec, Conversation):
                turns = [(t.role, t.content) for t in rec.turns]
                out.append(chatml_length(rec.system or default_system, turns))
    return out


# ----------------------------------------------------------------------------- measurements (GPU, one per process)
def _anchor() -> Any:
    sys.path.insert(0, str(ANCHORS))
    import hf_peft_baseline

    return hf_peft_baseline


def _peft_model(size: str, seed: int = 0) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = _anchor().random_model(size)
    return get_peft_model(
        model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    )


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
                peak_gib=round((steady + pool) / 2**30, 2), graph_pool_gib=round(pool / 2**30, 2),
                peak_gib_whole_run=round((max(steady, warm_peak) + pool) / 2**30, 2))  # fmt: skip


def random_batches(size: str, batch: int, seqlen: int, vocab: int) -> list[dict[str, Any]]:
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for _ in range(4):
        x = torch.randint(0, vocab, (batch, seqlen), device="cuda", generator=gen)
        out.append(dict(input_ids=x, labels=x))
    return out


def cs_batches(vocab: int, packed: bool, batch: int, budget: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Batches of real customer-service lengths (random ids; the prompt third of each sample carries no loss):
    packed = one padding-free row of about `budget` tokens; else `batch` samples padded to the longest."""
    import torch

    lengths = json.loads(LENGTHS.read_text())
    rng = random.Random(0)
    out, real = [], []
    for _ in range(4):
        docs: list[int] = []
        while (sum(docs) < budget) if packed else (len(docs) < batch):
            docs.append(rng.choice(lengths))
        if packed and sum(docs) > budget:
            docs.pop()
        out.append(_cs_batch(docs, vocab, packed, torch))
        real.append(sum(docs))
    return out, real


def _cs_batch(docs: list[int], vocab: int, packed: bool, torch: Any) -> dict[str, Any]:
    ids = [torch.randint(0, vocab, (n,), device="cuda") for n in docs]
    labels = [x.clone() for x in ids]
    for lab in labels:
        lab[: len(lab) // 3] = -100
    if packed:
        pos = torch.cat([torch.arange(n, device="cuda") for n in docs])[None]
        for lab in labels:
            lab[0] = -100
        return dict(input_ids=torch.cat(ids)[None], labels=torch.cat(labels)[None], position_ids=pos)
    width = max(docs)
    x = torch.zeros(len(docs), width, dtype=torch.long, device="cuda")
    y = torch.full_like(x, -100)
    mask = torch.zeros_like(x)
    for i, (a, b) in enumerate(zip(ids, labels, strict=True)):
        x[i, : len(a)], y[i, : len(b)], mask[i, : len(a)] = a, b, 1
    return dict(input_ids=x, labels=y, attention_mask=mask)


def measure(
    impl: str, size: str, batch: int, seqlen: int, scenario: str, keep: int | None = None, graphs: bool | None = None
) -> dict[str, Any]:
    import torch

    if impl == "unsloth" and scenario == "random":
        return _unsloth_random(size, batch, seqlen)
    torch.cuda.reset_peak_memory_stats()
    if impl == "unsloth":
        model = _unsloth_model(size, seqlen)
    else:
        model = _peft_model(size)
        if impl == "hf":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        else:
            from kefu.train.fast import FastOptions, patch_model

            patch_model(model, FastOptions(keep_gate_up_layers=keep, cuda_graphs=graphs))
    vocab = model.config.vocab_size
    if scenario == "random":
        batches, real = random_batches(size, batch, seqlen, vocab), [batch * seqlen] * 4
    else:
        batches, real = cs_batches(vocab, packed=impl == "kefu", batch=batch, budget=batch * seqlen)
    r = _loop(model, batches, steps=8, warmup=3, real_tokens=real)
    label = impl if keep is None else f"{impl}[keep_gate_up_layers={keep}]"
    label += "" if graphs is None else f"[cuda_graphs={graphs}]"
    return dict(impl=label, size=size, batch=batch, seqlen=seqlen, scenario=scenario, **r)


def _unsloth_random(size: str, batch: int, seqlen: int) -> dict[str, Any]:
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


def _unsloth_model(size: str, seqlen: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from unsloth import FastLanguageModel

    model, _ = FastLanguageModel.from_pretrained(f"/tmp/q{size}", max_seq_length=seqlen, dtype=torch.bfloat16,
                                                 load_in_4bit=False)  # fmt: skip
    return FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0, bias="none",
                                            target_modules=TARGETS, use_gradient_checkpointing="unsloth",
                                            random_state=0)  # fmt: skip


def profile(size: str, batch: int, seqlen: int) -> None:
    """Top CUDA kernels of three kefu steps (after warm-up), for finding where the time goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from kefu.train.fast import patch_model

    model = _peft_model(size)
    patch_model(model)
    batches = random_batches(size, batch, seqlen, model.config.vocab_size)
    _loop(model, batches, steps=1, warmup=2, real_tokens=[1] * 4)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _loop(model, batches, steps=3, warmup=0, real_tokens=[1] * 4)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


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
    x = random_batches(size, batch, seqlen, model.config.vocab_size)[0]["input_ids"]

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


def run_all(a: argparse.Namespace) -> None:
    site = a.unsloth_site if a.unsloth_site and Path(a.unsloth_site).is_dir() else None
    results: list[dict[str, Any]] = []
    out = Path(a.out)
    with open(out.with_suffix(".log"), "w") as log:
        for size, batch in [(s, dict(SHAPES)[s]) for s in a.sizes]:  # in the order asked for
            for impl in a.impls:
                if impl == "unsloth" and not site:
                    continue
                if impl == "unsloth":
                    save = [sys.executable, str(ANCHORS / "unsloth_anchor.py"), "save", size]
                    env = {**os.environ, "PYTHONPATH": site or ""}
                    subprocess.run(save, env=env, capture_output=True, timeout=600)
                for scenario in a.scenarios if size == a.cs_size else ["random"]:
                    r = run_child(
                        ["one", impl, size, str(batch), str(a.seqlen), scenario],
                        site if impl == "unsloth" else None,
                        log,
                    )
                    results.append(r or dict(impl=impl, size=size, batch=batch, scenario=scenario, failed=True))
                    out.write_text(json.dumps(results, indent=1))
            for keep in a.kefu_variants:
                args = ["one", "kefu", size, str(batch), str(a.seqlen), "random", "--keep-gate-up", str(keep)]
                r = run_child(args, None, log)
                results.append(r or dict(impl=f"kefu[{keep}]", size=size, batch=batch, scenario="random", failed=True))
                out.write_text(json.dumps(results, indent=1))
            for graphs in a.kefu_graphs:
                args = ["one", "kefu", size, str(batch), str(a.seqlen), "random", "--graphs", graphs]
                r = run_child(args, None, log)
                label = f"kefu[cuda_graphs={graphs == 'on'}]"
                results.append(r or dict(impl=label, size=size, batch=batch, scenario="random", failed=True))
                out.write_text(json.dumps(results, indent=1))
            if a.numerics:
                r = run_child(["numerics", size, "2", str(a.seqlen)], None, log)
                results.append(r or dict(impl="numerics", size=size, failed=True))
                out.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: list[dict[str, Any]]) -> None:
    def find(impl: str, size: str, scen: str) -> dict[str, Any] | None:
        return next((r for r in results if r.get("impl") == impl and r["size"] == size and r.get("scenario") == scen
                     and not r.get("failed")), None)  # fmt: skip

    print("\n| shape | batch | scenario | impl | tok/s | peak GiB | vs hf | vs unsloth | first loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.get("impl") == "numerics" or r.get("failed"):
            continue
        hf, us = find("hf", r["size"], r["scenario"]), find("unsloth", r["size"], r["scenario"])
        vs_hf = f"{r['tok_s'] / hf['tok_s']:.2f}x" if hf else "-"
        vs_us = f"{r['tok_s'] / us['tok_s']:.2f}x" if us else "-"
        print(f"| {r['size']} | {r['batch']} | {r['scenario']} | {r['impl']} | {r['tok_s']:,} | {r['peak_gib']} | "
              f"{vs_hf} | {vs_us} | {r.get('first_loss')} |")  # fmt: skip
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
    one.add_argument("scenario", choices=["random", "cs"])
    one.add_argument("--keep-gate-up", type=int, default=None, help="FastOptions.keep_gate_up_layers (kefu)")
    one.add_argument("--graphs", choices=["on", "off"], default=None, help="FastOptions.cuda_graphs (kefu)")
    num = sub.add_parser("numerics")
    num.add_argument("size")
    num.add_argument("batch", type=int)
    num.add_argument("seqlen", type=int)
    prof = sub.add_parser("profile")
    prof.add_argument("size")
    prof.add_argument("batch", type=int)
    prof.add_argument("seqlen", type=int)
    al = sub.add_parser("all")
    al.add_argument("--out", default="train_speed.json")
    al.add_argument("--sizes", nargs="+", default=[s for s, _ in SHAPES])
    al.add_argument("--impls", nargs="+", default=["hf", "unsloth", "kefu"])
    al.add_argument("--scenarios", nargs="+", default=["random", "cs"])
    al.add_argument("--cs-size", default="0.5b")
    al.add_argument("--seqlen", type=int, default=2048)
    al.add_argument("--numerics", action="store_true")
    al.add_argument("--kefu-variants", nargs="*", type=int, default=[], help="extra kefu runs: keep_gate_up_layers")
    al.add_argument("--kefu-graphs", nargs="*", choices=["on", "off"], default=[], help="extra kefu runs: cuda_graphs")
    al.add_argument("--unsloth-site", default="/tmp/site")
    a = p.parse_args()
    if a.cmd == "lengths":
        lengths = cs_lengths()
        LENGTHS.write_text(json.dumps(lengths))
        mean = sum(lengths) / len(lengths)
        print(f"{len(lengths)} conversations, mean {mean:.0f}, max {max(lengths)} proxy tokens -> {LENGTHS}")
    elif a.cmd == "one":
        graphs = None if a.graphs is None else a.graphs == "on"
        print(json.dumps(measure(a.impl, a.size, a.batch, a.seqlen, a.scenario, a.keep_gate_up, graphs)))
    elif a.cmd == "profile":
        profile(a.size, a.batch, a.seqlen)
    elif a.cmd == "numerics":
        print(json.dumps(numerics(a.size, a.batch, a.seqlen)))
    else:
        run_all(a)


if __name__ == "__main__":
    main()
