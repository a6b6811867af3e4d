"""The precision choice: bf16 only where the hardware computes it natively, shown with its reason; and the line
serve and eval print: which runtime answers (ONNX int8/int4 or transformers at that precision) and why."""

from __future__ import annotations

from pathlib import Path

import torch

from kefu.answer.engines import answer_runtime
from kefu.answer.model import choose_precision, load_model, model_precision
from kefu.config import KefuConfig, ModelConfig, load_config
from tests.tiny import build_tiny_qwen2

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


def _cpu(path: Path | str, tmp_path: Path, *more: str) -> KefuConfig:
    return load_config(None, [f"model.path={path}", "model.device=cpu", f"model.cache_dir={tmp_path}", *more])


def test_answers_line_names_the_onnx_engine_and_its_precision(tmp_path: Path) -> None:
    wide = build_tiny_qwen2(tmp_path / "wide", hidden=64)  # head size 16: onnxruntime's CPU attention runs it
    auto = answer_runtime(_cpu(wide, tmp_path))
    assert auto.name == "onnx-int8"
    assert auto.line() == (
        "answers: onnx int8 (auto: model.device=cpu, so the ONNX CPU engine; int8 answers nearer full precision "
        "than int4 (model.runtime: onnx-int4 decodes faster))"
    )
    named = answer_runtime(_cpu(wide, tmp_path, "model.runtime=onnx-int4"))
    assert named.line() == "answers: onnx int4 (model.runtime=onnx-int4)"


def test_answers_line_gives_transformers_the_weights_precision(tmp_path: Path, tiny_model_dir: Path) -> None:
    wide = build_tiny_qwen2(tmp_path / "wide", hidden=64)
    forced = answer_runtime(_cpu(wide, tmp_path, "model.runtime=transformers", "model.dtype=float32"))
    assert forced.line() == "answers: transformers float32 (model.runtime=transformers; model.dtype=float32)"
    # 'auto' on a CPU falls back to transformers for a model the ONNX engine cannot run, and says why
    fallback = answer_runtime(_cpu(tiny_model_dir, tmp_path))  # head size 8
    hardware = model_precision(ModelConfig(path=str(tiny_model_dir), device="cpu"))
    assert fallback.name == "transformers" and fallback.precision == hardware.dtype
    assert fallback.line() == (
        f"answers: transformers {hardware.dtype} (auto: model.device=cpu, but the ONNX engine cannot run this "
        f"model: head size 8 is not a multiple of 16 (onnxruntime's CPU attention needs that); {hardware.reason})"
    )
    hub = answer_runtime(_cpu("Qwen/Qwen2.5-0.5B-Instruct", tmp_path))
    assert hub.name == "transformers" and "a hub id is not exported" in hub.reason
