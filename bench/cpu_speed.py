"""Answer speed on CPU: transformers fp32 `generate`, transformers bf16 (only where the CPU has it natively) and
kefu's ONNX engine (int8 and int4 exports), on the default model with RAG-sized prompts; one side-by-side table,
JSON in bench/results.

Prompts: a shop-assistant system prompt carrying sample-shop knowledge-base text (trimmed so the whole prompt is
about --prompt-tokens tokens, a different slice per question) and one sample-shop eval question as the user turn.
Each runtime runs in its own subprocess (its peak RSS is its own) and measures:
- TTFT P50/P99 over --questions prompts asked one at a time (transformers: `generate` of one token, i.e. the
  prefill; the engine: first streamed chunk through OnnxEngine.stream, its prefix reuse included);
- decode tokens/s of one stream ((N-1) tokens after the first over their time; end-of-turn ignored so every run
  decodes --new-tokens);
- aggregate decode tokens/s with --concurrency requests (transformers: one left-padded batch through `generate`;
  the engine: concurrent streams, counting the tokens emitted while all of them were decoding);
- greedy agreement with transformers fp32 on the first --agree-tokens tokens of each eval question (no KB text):
  the share of questions whose tokens are identical, and the mean share of identical leading tokens.

    python bench/cpu_speed.py [--isa native|avx2] [--questions 12] [--out bench/results/cpu_speed.json]

--isa avx2 runs transformers with ATEN_CPU_CAPABILITY=avx2 (torch's kernels limited to AVX2, no bf16 row). ONNX
Runtime has no switch limiting its kernels' ISA (MLAS picks by CPUID), so its row always uses the host's ISA.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHOP = HERE.parent / "src" / "kefu" / "samples" / "shop"
SYSTEM = (
    "你是青禾生活馆的客服小禾。请只根据下面的店铺资料回答顾客，资料里没有的就说不确定并建议转人工。\n\n店铺资料：\n"
)


def questions() -> list[str]:
    rows = [json.loads(line) for line in (SHOP / "data" / "eval_cases.jsonl").read_text("utf-8").splitlines() if line]
    return [r["turns"][0]["content"] for r in rows if r["category"] == "policy" and len(r["turns"]) == 1]


def rag_prompts(tok: Any, n: int, prompt_tokens: int) -> list[list[dict[str, str]]]:
    """n conversations of ~prompt_tokens tokens: system prompt + a rotating slice of the KB text + a question."""
    kb = "\n\n".join(p.read_text("utf-8") for p in sorted((SHOP / "kb").glob("*.md")))
    kb_ids = tok.encode(kb, add_special_tokens=False)
    out = []
    for i, q in enumerate((questions() * n)[:n]):
        base = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        room = max(0, prompt_tokens - _count(tok, base))
        start = (i * 97) % max(1, len(kb_ids) - room)
        context = tok.decode(kb_ids[start : start + room])
        out.append([{"role": "system", "content": SYSTEM + context}, {"role": "user", "content": q}])
    return out


def _count(tok: Any, messages: list[dict[str, str]]) -> int:
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tok.encode(text, add_special_tokens=False))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# --------------------------------------------------------------------------- transformers
def run_transformers(args: argparse.Namespace, dtype_name: str) -> dict[str, Any]:
    import torch

    from kefu.answer.model import load_model
    from kefu.config import load_config

    cfg = load_config(None, [f"model.dtype={dtype_name}", "model.device=cpu"])
    model, tok = load_model(cfg.model)
    model.eval()
    *convs, warm = rag_prompts(tok, args.questions + 1, args.prompt_tokens)

    def gen(batch: list[list[dict[str, str]]], n: int, force: bool = True) -> tuple[float, Any]:
        """Seconds and new ids of a greedy `generate`; `force` decodes all n tokens past the end of turn."""
        tok.padding_side = "left"
        texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n if force else 0, do_sample=False)
        return time.perf_counter() - t0, out[:, enc["input_ids"].shape[1] :]

    gen([warm], 2)  # warm-up
    ttft = [gen([c], 1)[0] for c in convs]
    one = gen(convs[:1], 1)[0]
    full = gen(convs[:1], args.new_tokens)[0]
    conc = convs[: args.concurrency]
    c_one = gen(conc, 1)[0]
    c_full = gen(conc, args.new_tokens)[0]
    agree = [_retok(tok, gen([[{"role": "user", "content": q}]], args.agree_tokens, False)[1][0], args.agree_tokens)
             for q in questions()[: args.agree_questions]]  # fmt: skip
    return {
        "prompt_tokens": statistics.mean(_count(tok, c) for c in convs),
        "ttft_s": ttft,
        "decode_tok_s": (args.new_tokens - 1) / (full - one),
        "concurrent_tok_s": len(conc) * (args.new_tokens - 1) / (c_full - c_one),
        "greedy_ids": agree,
        "peak_rss_gb": peak_rss_gb(),
    }


# --------------------------------------------------------------------------- onnx engine
def run_onnx(args: argparse.Namespace, runtime: str) -> dict[str, Any]:
    from kefu.answer.engines.base import GenParams
    from kefu.answer.engines.onnx import OnnxEngine
    from kefu.config import load_config

    cfg = load_config(None, [f"model.runtime={runtime}", "model.device=cpu"])
    t0 = time.perf_counter()
    engine = OnnxEngine.from_config(cfg, runtime)
    ready_s = time.perf_counter() - t0
    tok = engine.tok
    *convs, warm = rag_prompts(tok, args.questions + 1, args.prompt_tokens)

    async def stream(conv: list[dict[str, str]], n: int, eos: bool = False) -> list[tuple[float, int]]:
        """(time, completion tokens so far) per chunk."""
        engine._versions[None].eos = set(eos_ids) if eos else set()
        marks = []
        async for c in engine.stream(conv, GenParams(max_tokens=n)):
            marks.append((time.perf_counter(), c.completion_tokens))
        return marks

    eos_ids = set(engine._versions[None].eos)

    async def main() -> dict[str, Any]:
        await stream(warm, 2)  # warm-up on a prompt not measured: its cache is reused only as far as it is shared
        ttft = []
        for c in convs:
            t = time.perf_counter()
            ttft.append((await stream(c, 1))[0][0] - t)
        marks = await stream(convs[-1], args.new_tokens)
        decode = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
        together = await asyncio.gather(*(stream(c, args.new_tokens) for c in convs[: args.concurrency]))
        start = max(m[0][0] for m in together)  # every stream has its first token: all are decoding
        end = min(m[-1][0] for m in together)
        window = sum(_tokens_between(m, start, end) for m in together)
        agree = []
        for q in questions()[: args.agree_questions]:
            engine._versions[None].eos = set(eos_ids)  # answers end at the end of turn, as transformers' do
            agree.append(await _ids(engine, q, args.agree_tokens))
        return {"ttft_s": ttft, "decode_tok_s": decode, "concurrent_tok_s": window / (end - start), "greedy_ids": agree}

    res = asyncio.run(main())
    res.update(prompt_tokens=statistics.mean(_count(tok, c) for c in convs), export_and_load_s=ready_s,
               prefix_hits=engine.prefix_hits, peak_rss_gb=peak_rss_gb())  # fmt: skip
    return res


def _tokens_between(marks: list[tuple[float, int]], start: float, end: float) -> int:
    inside = [n for t, n in marks if start <= t <= end]
    before = [n for t, n in marks if t < start]
    return (inside[-1] - (before[-1] if before else inside[0])) if inside else 0


async def _ids(engine: Any, q: str, n: int) -> list[int]:
    """Greedy token ids of an answer, re-encoded from its text (as transformers' side is: _retok)."""
    from kefu.answer.engines.base import GenParams

    text = "".join([c.text async for c in engine.stream([{"role": "user", "content": q}], GenParams(max_tokens=n))])
    return list(engine.tok.encode(text, add_special_tokens=False))[:n]


def _retok(tok: Any, ids: Any, n: int) -> list[int]:
    """Ids as the engine's side gets them (decode then encode), so both sides compare alike."""
    return list(tok.encode(tok.decode(ids, skip_special_tokens=True), add_special_tokens=False))[:n]


# --------------------------------------------------------------------------- driver
def child(args: argparse.Namespace) -> None:
    run = run_onnx if args.child.startswith("onnx") else run_transformers
    dtype = {"fp32": "float32", "bf16": "bfloat16"}.get(args.child, args.child)
    print("RESULT " + json.dumps(run(args, dtype)), flush=True)


def spawn(args: argparse.Namespace, name: str) -> dict[str, Any]:
    env = {**os.environ}
    if args.isa == "avx2" and not name.startswith("onnx"):
        env["ATEN_CPU_CAPABILITY"] = "avx2"
    cmd = [sys.executable, __file__, "--child", name, *sys.argv[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")


def agreement(ref: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    pairs = list(zip(ref, other, strict=True))
    lead = [_leading(a, b) / max(1, len(a), len(b)) for a, b in pairs]
    return {"identical_share": sum(a == b for a, b in pairs) / len(pairs), "mean_leading_share": statistics.mean(lead)}


def _leading(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def table(rows: dict[str, dict[str, Any]]) -> str:
    base = rows["transformers fp32"]["decode_tok_s"]
    head = "| runtime | prompt tok | TTFT P50 s | TTFT P99 s | decode tok/s (1 stream) | vs fp32 | tok/s at 4 concurrent | peak RSS GB | greedy identical / leading share |"  # noqa: E501
    lines = [head, "|" + "---|" * 9]
    for name, r in rows.items():
        agree = r.get("agreement", {})
        lines.append(
            f"| {name} | {r['prompt_tokens']:.0f} | {pct(r['ttft_s'], 50):.2f} | {pct(r['ttft_s'], 99):.2f} | "
            f"{r['decode_tok_s']:.1f} | {r['decode_tok_s'] / base:.1f}x | {r['concurrent_tok_s']:.1f} | "
            f"{r['peak_rss_gb']:.2f} | "
            + (f"{agree['identical_share']:.0%} / {agree['mean_leading_share']:.0%} |" if agree else "reference |")
        )
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", choices=["native", "avx2"], default="native")
    ap.add_argument("--questions", type=int, default=12, help="prompts for the TTFT distribution")
    ap.add_argument("--prompt-tokens", type=int, default=600)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--agree-tokens", type=int, default=32)
    ap.add_argument("--agree-questions", type=int, default=1000, help="at most this many eval questions")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse()
    if args.child:
        return child(args)
    from kefu.answer.model import cpu_has_native_bf16
    from kefu.io import write_json

    names = ["fp32"] + (["bf16"] if cpu_has_native_bf16() and args.isa == "native" else []) + ["onnx-int8", "onnx-int4"]
    rows = {}
    for name in names:
        label = f"transformers {name}" if not name.startswith("onnx") else f"kefu onnx engine ({name[5:]})"
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows[label] = spawn(args, name)
    ref = rows["transformers fp32"]["greedy_ids"]
    for label, r in rows.items():
        if label != "transformers fp32":
            r["agreement"] = agreement(ref, r["greedy_ids"])
    print(table(rows))
    out = args.out or HERE / "results" / f"cpu_speed_{args.isa}.json"
    machine = {"cpu": platform.processor() or _lscpu_model(), "cores": os.cpu_count(), "isa": args.isa}
    write_json(out, {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})
    print(f"wrote {out}", file=sys.stderr)


def _lscpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


if __name__ == "__main__":
    main()
