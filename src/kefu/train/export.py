"""`kefu export`: merge the LoRA adapter into the base and write merged safetensors, ONNX and/or GGUF, then prove
each artefact answers exactly like base+adapter before the output folder appears.

Parity: greedy answers to fixed zh+en prompts from base+adapter (the PeftModel, the reference) are compared with
the merged folder reloaded from disk, the ONNX graph under onnxruntime and the GGUF reloaded through
transformers. Every backend decodes with the same full-recompute greedy loop from the same prompt ids. A backend
passes when its tokens equal the reference's and the largest |logit difference| over the shared steps is within
tolerance (1e-3 for float32 artefacts, 5e-2 for an F16 GGUF); a different token is forgiven only at a float tie
(the reference's top-two logit gap is within twice the observed difference). Anything else fails the export,
and the output folder is never created (built under a temp name, renamed at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.io import atomic_dir, write_json

FORMATS = ("merged", "onnx", "gguf")
PARITY_PROMPTS = [
    "你好，请问怎么退货？",
    "订单一般多久发货？",
    "Hello, can I return an opened item?",
    "Do you ship overseas?",
]
TOL_F32, TOL_F16 = 1e-3, 5e-2
NextLogits = Callable[[list[int]], np.ndarray]


@dataclass
class Trace:
    """One greedy decode: the generated ids and the logits each step chose from."""

    tokens: list[int]
    logits: list[np.ndarray]


@dataclass
class ExportReport:
    out: Path
    formats: list[str]
    parity: dict[str, Any]
    files: list[str] = field(default_factory=list)


def greedy_trace(next_logits: NextLogits, prompt: list[int], max_new_tokens: int, stops: set[int]) -> Trace:
    ids, trace = list(prompt), Trace([], [])
    for _ in range(max_new_tokens):
        logits = next_logits(ids)
        token = int(np.argmax(logits))
        trace.tokens.append(token)
        trace.logits.append(logits)
        ids.append(token)
        if token in stops:
            break
    return trace


def torch_next_logits(model: Any) -> NextLogits:
    import torch

    def run(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False).logits
        return np.asarray(out[0, -1].double().cpu().numpy())

    return run


def compare(ref: Trace, other: Trace, tol: float) -> dict[str, Any]:
    """Token match and max |logit diff| over the steps whose prefixes agree; a divergence passes only at a tie."""
    shared = 0
    while shared < min(len(ref.tokens), len(other.tokens)) and ref.tokens[shared] == other.tokens[shared]:
        shared += 1
    steps = min(shared + 1, len(ref.logits), len(other.logits))
    diffs = [float(np.max(np.abs(ref.logits[i] - other.logits[i]))) for i in range(steps)]
    max_diff = max(diffs, default=0.0)
    match = ref.tokens == other.tokens
    tie = False
    if not match and shared < steps:
        top2 = np.sort(ref.logits[shared])[-2:]
        tie = float(top2[1] - top2[0]) <= 2 * diffs[shared]
    return {
        "tokens": other.tokens,
        "token_match": match,
        "first_divergence": None if match else shared,
        "float_tie": tie,
        "max_abs_logit_diff": max_diff,
        "ok": max_diff <= tol and (match or tie),
    }


@dataclass
class Checker:
    """Runs one backend over the parity prompts and compares it with the reference traces."""

    prompts: list[list[int]]
    refs: list[Trace]
    max_new_tokens: int
    stops: set[int]

    def __call__(self, fn: NextLogits, tol: float = TOL_F32) -> dict[str, Any]:
        traces = [greedy_trace(fn, p, self.max_new_tokens, self.stops) for p in self.prompts]
        return summarize([compare(ref, t, tol) for ref, t in zip(self.refs, traces, strict=True)], tol)


def summarize(per_prompt: list[dict[str, Any]], tol: float) -> dict[str, Any]:
    return {
        "tolerance": tol,
        "ok": all(r["ok"] for r in per_prompt),
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in per_prompt),
        "token_match": all(r["token_match"] for r in per_prompt),
        "prompts": per_prompt,
    }


def prompt_ids(tok: Any, system: str | None) -> list[list[int]]:
    """The parity prompts rendered with the model's chat template, as token ids."""
    out = []
    for q in PARITY_PROMPTS:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append(tok(text, add_special_tokens=False).input_ids)
    return out


def save_merged(model: Any, tok: Any, dest: Path) -> None:
    """Weights (safetensors), config, generation config (stop tokens), tokenizer and chat template."""
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def _formats(formats: list[str]) -> list[str]:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise KefuError(f"export --format: unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    # The merged folder is always written: ONNX and GGUF are built from it and it is what serving loads.
    return ["merged", *[f for f in FORMATS[1:] if f in formats]]


def _adapter_dir(cfg: KefuConfig, adapter: Path) -> Path:
    path = cfg.resolve(adapter)
    if not (path / "adapter_config.json").is_file():
        raise KefuError(f"export --adapter: {path} is not a LoRA adapter folder (no adapter_config.json)")
    return path


def _system(cfg: KefuConfig) -> str:
    from kefu.data.persona import system_prompt  # training does not import chat

    return system_prompt(cfg.persona)


def run_export(
    cfg: KefuConfig, adapter: Path, out: Path, formats: list[str], *, gguf_f16: bool = False, max_new_tokens: int = 16
) -> ExportReport:
    """Merge `adapter` into cfg.model, write the asked formats under `out`, verify parity, write out/parity.json."""
    from kefu.answer.model import load_model
    from kefu.answer.templates import stop_token_ids

    fmts = _formats(formats)
    mcfg = cfg.model.model_copy(
        update={"adapter": str(_adapter_dir(cfg, adapter)), "dtype": "float32", "device": "cpu"}
    )
    peft_model: Any
    peft_model, tok = load_model(mcfg, cfg_root=cfg.root)
    system = _system(cfg)
    prompts, stops = prompt_ids(tok, system), set(stop_token_ids(tok))
    refs = [greedy_trace(torch_next_logits(peft_model), p, max_new_tokens, stops) for p in prompts]
    merged = peft_model.merge_and_unload()
    with atomic_dir(cfg.resolve(out)) as tmp:
        check = Checker(prompts, refs, max_new_tokens, stops)
        backends = _build_and_check(merged, tok, tmp, fmts, system, gguf_f16, check)
        parity = {
            "reference": "base + adapter (PeftModel), float32 on CPU",
            "decoding": f"greedy, full recompute, at most {max_new_tokens} new tokens",
            "prompts": PARITY_PROMPTS,
            "reference_tokens": [r.tokens for r in refs],
            "backends": backends,
            "ok": all(b["ok"] for b in backends.values()),
        }
        if not parity["ok"]:
            raise KefuError(_failure(parity, cfg.resolve(out)))
        write_json(tmp / "parity.json", parity)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    return ExportReport(cfg.resolve(out), fmts, parity, files)


def _build_and_check(
    merged: Any, tok: Any, tmp: Path, fmts: list[str], system: str, gguf_f16: bool, check: Checker
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    save_merged(merged, tok, tmp / "merged")
    # Check what was written, not what is in memory: a bad save must fail here.
    on_disk = AutoModelForCausalLM.from_pretrained(str(tmp / "merged"), dtype="float32").eval()
    backends = {"merged": check(torch_next_logits(on_disk))}
    if "onnx" in fmts:
        backends["onnx"] = _onnx(on_disk, tok, tmp / "onnx", check)
    if "gguf" in fmts:
        backends["gguf"] = _gguf(on_disk, tok, tmp / "gguf", system, gguf_f16, check)
    return backends


def _onnx(model: Any, tok: Any, dest: Path, check: Checker) -> dict[str, Any]:
    from kefu.train.export_onnx import export_onnx
    from kefu.train.onnx_greedy import next_logits, open_session

    session = open_session(str(export_onnx(model, tok, dest)))
    result = check(lambda ids: next_logits(session, ids))
    result["kv_cache"] = False
    return result


def _gguf(model: Any, tok: Any, dest: Path, system: str, f16: bool, check: Checker) -> dict[str, Any]:
    from kefu.answer.default_model import load_gguf
    from kefu.train.export_gguf import export_gguf

    path = export_gguf(model, tok, dest, system=system, f16=f16)
    reloaded, tok2 = load_gguf(path)
    result = check(torch_next_logits(reloaded.eval()), TOL_F16 if f16 else TOL_F32)
    texts = [*PARITY_PROMPTS, tok.apply_chat_template([{"role": "user", "content": PARITY_PROMPTS[0]}], tokenize=False)]
    same_tokens = all(tok(t).input_ids == tok2(t).input_ids for t in texts)
    result.update(tensor_type="F16" if f16 else "F32", tokenizer_match=same_tokens, ok=result["ok"] and same_tokens)
    return result


def _failure(parity: dict[str, Any], out: Path) -> str:
    lines = [f"export: parity check failed; nothing written to {out}"]
    for name, b in parity["backends"].items():
        state = "ok" if b["ok"] else "FAILED"
        tokens = "match" if b["token_match"] else "differ"
        diff = f"max |logit diff| {b['max_abs_logit_diff']:.2e}, tolerance {b['tolerance']:g}"
        lines.append(f"  {name}: {state} ({diff}, tokens {tokens})")
    return "\n".join(lines)
