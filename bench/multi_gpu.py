"""`kefu train` on 1 vs N GPUs at the same global batch: LoRA tokens/s and loss curves (DDP), and full fine-tuning's
peak memory per GPU (FSDP2 on 1 GPU, which shards nothing, vs N GPUs). Random weights of real Qwen2.5 shapes
(written below, no hub), a small BPE tokenizer trained here, synthetic customer-service conversations of --seq
tokens.

    python bench/multi_gpu.py --nproc 8 --out bench/results/multi_gpu.json      # 1 vs 8 GPUs, 0.5B/1.5B/7B
    python bench/multi_gpu.py --nproc 1 --sizes 0.5b                           # one GPU: the 1-GPU column only
    python bench/multi_gpu.py --cpu                                            # smoke: tiny shape, 1 vs 2 CPU
                                                                               # processes (gloo), LoRA only

Every run is `torchrun --nproc_per_node P -m kefu train` on a project folder, as a user would launch it; the numbers
come from its train_report.json (tokens/s over the whole run, rank 0's peak memory: FSDP ranks are symmetric).
Both columns use the hf backend: kefu's fused path is one-GPU only, and would make the comparison unfair.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Qwen2.5 shapes (hidden, intermediate, layers, heads, kv heads, tied embeddings), vocabulary 151,936.
SHAPES: dict[str, tuple[int, int, int, int, int, bool]] = {
    "tiny": (64, 128, 2, 4, 2, True),  # the CPU smoke
    "0.5b": (896, 4864, 24, 14, 2, True),
    "1.5b": (1536, 8960, 28, 12, 2, True),
    "7b": (3584, 18944, 28, 28, 4, False),
}
VOCAB = 151_936
SENTENCES = [
    "您好，请问有什么可以帮您？", "七天无理由退货，签收后7天内可申请，商品需保持完好。",
    "订单已发货，顺丰快递通常48小时内送达。", "优惠券不可叠加使用。", "Returns are accepted within 7 days.",
    "Your order ships within 48 hours.", "发票可在订单详情页申请，电子发票当天开具。", "价格保护期为15天。",
]  # fmt: skip


# ----------------------------------------------------------------------------- project (model, tokenizer, data)
def build_model(path: Path, size: str, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    sys.path.insert(0, str(ROOT))  # the tests' tokenizer builder: a BPE trained in a second, offline
    from tests.tiny import build_tokenizer

    tok = build_tokenizer(path)
    hidden, inter, layers, heads, kv, tied = SHAPES[size]
    cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=tied, max_position_embeddings=32768,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype))
    model.save_pretrained(path)


def conversations(tok_dir: Path, n: int, seq: int) -> list[dict[str, Any]]:
    """`n` distinct conversations of about `seq` tokens each (the answer carries nearly all of them)."""
    from transformers import AutoTokenizer

    tok, rng = AutoTokenizer.from_pretrained(tok_dir), random.Random(0)
    rows = []
    for i in range(n):
        answer = ""
        while len(tok(answer).input_ids) < seq - 40:
            answer += rng.choice(SENTENCES)
        turns = [{"role": "user", "content": f"第{i}个问题：能退货吗？"}, {"role": "assistant", "content": answer}]
        rows.append({"system": "你是客服。", "turns": turns, "meta": {"source": "bench", "line": i + 1}})
    return rows


def make_project(root: Path, size: str, a: argparse.Namespace, cuda: bool) -> Path:
    model = root / "model"
    build_model(model, size, "bfloat16" if cuda else "float32")
    data = root / "data" / "prepared"
    data.mkdir(parents=True)
    rows = conversations(model, a.global_batch * a.steps, a.seq)
    (data / "sft.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    train = {"backend": "hf", "method": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
             "max_steps": a.steps, "logging_steps": 1, "save_steps": 10**6, "warmup_ratio": 0.0,
             "scheduler": "constant", "lr": 1e-4, "max_seq_len": a.seq + 64,
             "gradient_checkpointing": cuda}  # fmt: skip
    cfg = {"model": {"path": str(model), "sha256": None, "template": "chatml"}, "data": {"output_dir": str(data)},
           "train": train}  # fmt: skip
    (root / "kefu.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
    return root / "kefu.yaml"


# ----------------------------------------------------------------------------- runs
def train(
    project: Path, nproc: int, global_batch: int, run: str, *sets: str, cuda: bool, resume: bool = False
) -> dict[str, Any]:
    """One `torchrun -m kefu train`; its report's numbers, or the error's last lines (e.g. out of memory)."""
    out = project.parent / f"runs/{run}-{nproc}"
    overrides = [f"train.output_dir={out}", f"train.batch_size={global_batch // nproc}", "train.grad_accum=1", *sets]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "kefu",
           "train", "-c", str(project), *[x for s in overrides for x in ("--set", s)]]  # fmt: skip
    cmd += ["--resume"] if resume else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    if not cuda:
        env["OMP_NUM_THREADS"] = "1"  # one thread per process: 2 processes on 2 cores
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        oom = "out of memory" in proc.stderr.lower()
        return {"ok": False, "error": "out of memory" if oom else " | ".join(tail)}
    report = json.loads((out / "train_report.json").read_text("utf-8"))
    losses = [e["loss"] for e in report["history"] if "loss" in e]
    return {
        "ok": True, "gpus": nproc, "per_gpu_batch": global_batch // nproc, "global_batch": global_batch,
        "tokens_per_s": report["tokens_per_s"], "peak_memory_mb": report["peak_memory_mb"],
        "train_wall_s": report["wall_s"], "launch_wall_s": round(time.perf_counter() - t0, 1), "losses": losses,
    }  # fmt: skip


def bench_size(size: str, a: argparse.Namespace, cuda: bool) -> dict[str, Any]:
    counts = [1] if a.nproc == 1 else [1, a.nproc]
    with tempfile.TemporaryDirectory(prefix=f"kefu-multi-{size}-") as tmp:
        print(f"[{size}] building random weights and data ...", file=sys.stderr, flush=True)
        project = make_project(Path(tmp), size, a, cuda)
        result: dict[str, Any] = {"size": size, "lora": {}, "lora_fsdp": {}, "full": {}}
        for n in counts:
            print(f"[{size}] LoRA on {n} process(es) ...", file=sys.stderr, flush=True)
            result["lora"][n] = train(project, n, a.global_batch, "lora", cuda=cuda)
        if cuda and size == a.sizes[0]:  # LoRA through FSDP2 works too (peft weights sharded with the layer)
            print(f"[{size}] LoRA with FSDP2 on {counts[-1]} GPU(s) ...", file=sys.stderr, flush=True)
            n = counts[-1]
            result["lora_fsdp"][n] = train(project, n, a.global_batch, "lora-fsdp", "train.parallel=fsdp", cuda=cuda)
        for n in counts if cuda and not a.skip_full else []:
            print(f"[{size}] full fine-tune on {n} GPU(s) ...", file=sys.stderr, flush=True)
            result["full"][n] = train(project, n, a.global_batch, "full", *FSDP_FULL, cuda=cuda)
        if cuda and not a.skip_full and size == a.sizes[0]:
            result["resume"] = resume_check(project, counts[-1], a, result["full"][counts[-1]])
    return result


FSDP_FULL = ("train.method=full", "train.parallel=fsdp")  # FSDP2 on 1 GPU too: the same code, nothing to shard


def resume_check(project: Path, n: int, a: argparse.Namespace, whole: dict[str, Any]) -> dict[str, Any]:
    """Stop a full FSDP2 run at half its steps (sharded checkpoint), `--resume` it: same curve as the whole run?"""
    print(f"[resume] full fine-tune on {n} GPU(s), stopped at step {a.steps // 2} and resumed ...", file=sys.stderr)
    half = [f"train.max_steps={a.steps // 2}", f"train.save_steps={a.steps // 2}"]
    first = train(project, n, a.global_batch, "resume", *FSDP_FULL, *half, cuda=True)
    if not first.get("ok"):
        return first
    shards = sorted(p.name for p in (project.parent / f"runs/resume-{n}").glob("checkpoint-*/*"))
    second = train(project, n, a.global_batch, "resume", *FSDP_FULL, cuda=True, resume=True)
    return second | {"checkpoint_files": shards, "max_loss_gap_vs_whole_run": loss_gap(whole, second)}


# ----------------------------------------------------------------------------- report
def loss_gap(one: dict[str, Any], many: dict[str, Any]) -> float | None:
    if not (one.get("ok") and many.get("ok")):
        return None
    if len(one["losses"]) != len(many["losses"]):  # a run logged fewer steps than the other: no like-for-like
        return None
    return round(max(abs(x - y) for x, y in zip(one["losses"], many["losses"], strict=True)), 6)


def rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for kind in ("lora", "lora_fsdp", "full"):
        runs = result[kind]
        base = result["lora" if kind == "lora_fsdp" else kind].get(1, {})
        for n, r in runs.items():
            if not r.get("ok"):
                out.append([result["size"], kind, str(n), "-", "-", "-", r.get("error", "?")[:60], "-", "-"])
                continue
            speed = r["tokens_per_s"] / base["tokens_per_s"] if base.get("ok") else None
            how = "FSDP2" if kind != "lora" else "DDP" if n > 1 else "1 process"
            gap = loss_gap(base, r) if n > 1 or kind == "lora_fsdp" else None
            out.append([result["size"], f"{kind.split('_')[0]} ({how})", str(n), str(r["per_gpu_batch"]),
                        f"{r['tokens_per_s']:,.0f}", f"{speed:.2f}x" if speed else "-", f"{r['peak_memory_mb']:,.0f}",
                        f"{r['losses'][-1]:.4f}", "-" if gap is None else f"{gap:.2e}"])  # fmt: skip
    return out


def print_table(results: list[dict[str, Any]]) -> None:
    head = ["shape", "run", "GPUs", "batch/GPU", "tokens/s", "vs 1", "peak MiB/GPU", "final loss", "max |Δloss| vs 1"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for result in results:
        for row in rows(result):
            print("| " + " | ".join(row) + " |")
    for result in results:
        if "resume" in result:
            r = result["resume"]
            gap = r.get("max_loss_gap_vs_whole_run") if r.get("ok") else r.get("error")
            print(f"\n{result['size']} full FSDP2, stopped at half and resumed from its sharded checkpoint "
                  f"({len(r.get('checkpoint_files', []))} files): max |Δloss| vs the whole run = {gap}")  # fmt: skip


def device_name(cuda: bool) -> str:
    import torch

    if cuda:
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nproc", type=int, default=None, help="GPUs of the N-GPU column (default: all; --cpu: 2)")
    ap.add_argument("--sizes", default=None, help="comma-separated: " + ", ".join(SHAPES) + " (default: the GPU ones)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 20; --cpu 4)")
    ap.add_argument("--global-batch", type=int, default=None, help="samples per step over all GPUs (default 16)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sample (default 512; --cpu 64)")
    ap.add_argument("--skip-full", action="store_true", help="LoRA only")
    ap.add_argument("--cpu", action="store_true", help="smoke run on CPU with gloo (tiny shape, LoRA only)")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    a = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available() and not a.cpu
    if not cuda and not a.cpu:
        raise SystemExit("no CUDA GPU here: pass --cpu for the gloo smoke run")
    a.nproc = a.nproc or (torch.cuda.device_count() if cuda else 2)
    if cuda and a.nproc > torch.cuda.device_count():
        raise SystemExit(f"--nproc {a.nproc}: only {torch.cuda.device_count()} GPU(s) here")
    a.steps, a.seq = a.steps or (20 if cuda else 4), a.seq or (512 if cuda else 64)
    a.global_batch = a.global_batch or (16 if cuda else 4)
    if a.global_batch % a.nproc:
        raise SystemExit(f"--global-batch {a.global_batch} must divide by --nproc {a.nproc}")
    a.sizes = (a.sizes or ("0.5b,1.5b,7b" if cuda else "tiny")).split(",")
    results = [bench_size(s, a, cuda) for s in a.sizes]
    print(f"\n{device_name(cuda)}: global batch {a.global_batch} x {a.seq} tokens, {a.steps} steps\n")
    print_table(results)
    if a.out:
        sys.path.insert(0, str(ROOT / "src"))  # as the children get it: kefu need not be installed (the GPU image)
        from kefu.io import write_json

        meta = {"device": device_name(cuda), "global_batch": a.global_batch, "seq": a.seq, "steps": a.steps}
        write_json(a.out, {**meta, "results": results})


if __name__ == "__main__":
    main()
