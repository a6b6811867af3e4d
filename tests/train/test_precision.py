"""The precision choice: bf16 only where the hardware computes it natively, shown with its reason."""

from __future__ import annotations

from pathlib import Path

import torch

from kefu.answer.model import choose_precision, load_model, model_precision
from kefu.config import ModelConfig

AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}  # a typical laptop / cloud VM without bf16
AVX512_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16"}  # e.g. AMD Zen 4, Intel Cooper Lake
AMX = AVX2_ONLY | {"avx512f", "amx_tile", "amx_bf16"}  # Intel Sapphire Rapids and later


def test_auto_is_fp32_on_a_cpu_without_native_bf16() -> None:
    choice = choose_precision("auto", "cpu", flags=AVX2_ONLY)
    assert choice.dtype == "float32"
    assert "no native bf16" in choice.reason and "emulated" in choice.reason
    assert choice.line().startswith("precision: float32 (")


def test_auto_is_bf16_where_the_cpu_has_it() -> None:
    bf16 = choose_precision("auto", "cpu", flags=AVX512_BF16)
    amx = choose_precision("auto", "cpu", flags=AMX)
    assert (bf16.dtype, amx.dtype) == ("bfloat16", "bfloat16")
    assert "avx512_bf16" in bf16.reason and "amx_bf16" in amx.reason


def test_an_explicit_dtype_is_kept_and_emulation_is_called_slow() -> None:
    forced = choose_precision("float32", "cpu", flags=AVX512_BF16)
    assert forced.dtype == "float32" and "slow" not in forced.reason
    emulated = choose_precision("bfloat16", "cpu", flags=AVX2_ONLY)
    assert emulated.dtype == "bfloat16" and "only emulates it: slow" in emulated.reason
    assert "slow" not in choose_precision("bfloat16", "cpu", flags=AMX).reason


def test_gpus_get_bf16_or_fp16() -> None:
    assert choose_precision("auto", "cuda", cuda_bf16=True).dtype == "bfloat16"
    assert choose_precision("auto", "cuda:1", cuda_bf16=False).dtype == "float16"


def test_load_model_uses_the_choice(tiny_model_dir: Path) -> None:
    mcfg = ModelConfig(path=str(tiny_model_dir), sha256=None)
    model, _ = load_model(mcfg)
    assert model.dtype == getattr(torch, model_precision(mcfg).dtype)
    forced, _ = load_model(mcfg.model_copy(update={"dtype": "float32"}))
    assert forced.dtype == torch.float32
