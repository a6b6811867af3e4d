"""Quantized ONNX exports for the CPU engine, built once per model version and cached on disk.

A model version is the base model plus, optionally, a LoRA adapter (or a merged model folder). Its export is
keyed by what determines the weights: the base folder's files, the adapter's file hashes, the precision and the
onnxruntime-genai version. An adapter is merged into the fp32 weights first, so serving it costs nothing extra
per token. onnxruntime-genai's model builder runs in a subprocess (it peaks at ~6.5 GB for the 0.5B default;
a subprocess gives that memory back to the OS) and writes into a temp folder that is renamed into place whole.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kefu.errors import KefuError

PRECISIONS = ("int4", "int8", "fp32")
_FORMAT = 1  # bump when the builder options below change, so old exports are rebuilt
# prune_lm_head: the prompt's logits are never read, so only the last position goes through the 151k-row head.
_BUILDER_OPTIONS = ["prune_lm_head=true"]


# Architectures onnxruntime-genai's builder exports that kefu's templates cover; others stay on transformers.
_ARCHITECTURES = {"Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
                  "GemmaForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM"}  # fmt: skip


def unsupported_reason(folder: Path) -> str | None:
    """Why the model in `folder` cannot run on the ONNX CPU engine, or None when it can."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        return f"cannot read {folder / 'config.json'}: {e}"
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in _ARCHITECTURES:
        return f"architecture {arch} is not exported by onnxruntime-genai's builder"
    head = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if head % 16:
        return f"head size {head} is not a multiple of 16 (onnxruntime's CPU attention needs that)"
    return None


def builder_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("onnxruntime-genai")
    except metadata.PackageNotFoundError as e:
        raise KefuError("the onnx runtime needs onnxruntime-genai: pip install onnxruntime-genai") from e


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        with p.open("rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
    return h.hexdigest()


def folder_identity(folder: Path) -> str:
    """Cheap identity of a model folder: its path plus each file's name, size and mtime (weights are GBs)."""
    stats = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps([str(folder.resolve()), stats]).encode()).hexdigest()


def adapter_hash(adapter: Path) -> str:
    """Content hash of a LoRA adapter folder (small files), so a retrained adapter at the same path re-exports."""
    files = [p for p in adapter.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin")]
    return _hash_files(files)


def export_key(base: str, adapter: Path | None, precision: str) -> str:
    parts = {"base": base, "adapter": adapter_hash(adapter) if adapter else None, "precision": precision,
             "builder": builder_version(), "format": _FORMAT}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def is_complete(folder: Path) -> bool:
    return (folder / "genai_config.json").is_file() and (folder / "model.onnx").is_file()


def ensure_export(source: Path, dest_root: Path, precision: str, adapter: Path | None = None) -> Path:
    """The cached export of `source` (+ `adapter` merged in) at `precision`, building it the first time."""
    if precision not in PRECISIONS:
        raise KefuError(f"onnx export: precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    dest = dest_root / export_key(folder_identity(source), adapter, precision)
    if is_complete(dest):
        return dest
    dest_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest_root))
    try:
        merged = _merge(source, adapter, work / "merged") if adapter else source
        out = work / "onnx"
        run_builder(merged, out, precision, work / "cache")
        _publish(out, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished export into place; if another process got there first, keep theirs (same content)."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    try:
        os.replace(tmp, dest)
    except OSError:
        if not is_complete(dest):
            raise


def _merge(source: Path, adapter: Path, out: Path) -> Path:
    """Base fp32 weights with the LoRA adapter merged in, saved as a plain model folder for the builder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (adapter / "adapter_config.json").is_file():
        raise KefuError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    tok = AutoTokenizer.from_pretrained(str(source))
    model: Any = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


# --------------------------------------------------------------------------- builder subprocess
_LAYER = re.compile(r"^Reading layer (\d+)")
_QUANT = re.compile(r"complete quantization of /(model/layers\.\d+/mlp/down_proj|lm_head)/")


def _steps(source: Path, precision: str) -> int:
    layers = int(json.loads((source / "config.json").read_text()).get("num_hidden_layers", 1))
    return layers + (layers + 1 if precision != "fp32" else 0) + 1  # read, quantize (+ head), save


def run_builder(source: Path, out: Path, precision: str, cache: Path) -> None:
    """Run onnxruntime-genai's model builder on a model folder, showing its progress; raises with its log."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(out),
           "-p", precision, "-e", "cpu", "-c", str(cache), "--extra_options", *_BUILDER_OPTIONS]  # fmt: skip
    tail: collections.deque[str] = collections.deque(maxlen=30)
    env = {**os.environ, "TQDM_DISABLE": "1"}  # the builder's own per-tensor bars would flood the output
    with (
        _progress(_steps(source, precision), f"export {precision} ONNX") as advance,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc,
    ):
        for line in _lines(proc):
            tail.append(line)
            if _LAYER.match(line) or _QUANT.search(line) or line.startswith("Saving GenAI config"):
                advance()
    if proc.returncode != 0 or not is_complete(out):
        log = "\n".join(tail)
        raise KefuError(f"onnx export of {source} failed (exit {proc.returncode}); builder output:\n{log}")


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line.rstrip()


class _progress:
    """A bar with elapsed time and an estimate in a terminal, plain lines (every 10%) otherwise."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done, self.start = total, desc, 0, time.perf_counter()
        self.bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="step")
        else:
            print(f"{self.desc}: started", file=sys.stderr, flush=True)
        return self.advance

    def advance(self) -> None:
        self.done = min(self.done + 1, self.total)
        if self.bar is not None:
            self.bar.update(1)
        elif self.done * 10 // self.total > (self.done - 1) * 10 // self.total:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"{self.desc}: {self.done}/{self.total} steps, {elapsed:.0f} s elapsed, ~{eta:.0f} s left",
                  file=sys.stderr, flush=True)  # fmt: skip

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            print(f"{self.desc}: done in {time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)
