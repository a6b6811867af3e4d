from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.train import export
from kefu.train.export import run_export


def make_adapter(model_dir: Path, dest: Path) -> Path:
    """A LoRA adapter whose B matrices are non-zero, so merging really changes the weights."""
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(dest)
    return dest


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_export_all_formats_with_parity(arch: str, tiny_model_dir: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    model_dir = tiny_model_dir if arch == "qwen2" else tiny_llama_dir
    adapter = make_adapter(model_dir, tmp_path / "adapter")
    cfg = load_config(None, [f"model.path={model_dir}"])
    report = run_export(cfg, adapter, tmp_path / "out", ["onnx", "gguf"], max_new_tokens=8)

    out = tmp_path / "out"
    parity = json.loads((out / "parity.json").read_text(encoding="utf-8"))
    assert parity["ok"] and set(parity["backends"]) == {"merged", "onnx", "gguf"}
    for backend in parity["backends"].values():
        assert backend["token_match"] and backend["max_abs_logit_diff"] < 1e-3
    assert parity["backends"]["gguf"]["tokenizer_match"]
    assert report.formats == ["merged", "onnx", "gguf"]
    expected = {"merged/model.safetensors", "merged/chat_template.jinja", "merged/generation_config.json"}
    expected |= {"onnx/model.onnx", "onnx/onnx_greedy.py", "gguf/model.gguf", "gguf/Modelfile"}
    assert expected <= set(report.files)

    # Merging mattered: the merged weights differ from the base.
    base = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    merged = load_file(out / "merged" / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(base[name], merged[name])

    modelfile = (out / "gguf" / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith('FROM ./model.gguf\nTEMPLATE """')
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "SYSTEM" in modelfile

    # The copied helper decodes the ONNX graph on its own, as a user without kefu would run it.
    prompt = [str(t) for t in parity["backends"]["onnx"]["prompts"][0]["tokens"][:3]]
    run = subprocess.run([sys.executable, "onnx_greedy.py", "model.onnx", *prompt], cwd=out / "onnx",
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert run.stdout.startswith("[")


def test_tampered_merge_fails_parity_and_leaves_no_output(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = export.save_merged

    def save_then_tamper(model, tok, dest: Path) -> None:  # type: ignore[no-untyped-def]
        real_save(model, tok, dest)
        weights = load_file(dest / "model.safetensors")
        weights["model.norm.weight"] = weights["model.norm.weight"] * 3.0
        save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})

    monkeypatch.setattr(export, "save_merged", save_then_tamper)
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    cfg = load_config(None, [f"model.path={tiny_model_dir}"])
    with pytest.raises(KefuError, match=r"(?s)parity check failed; nothing written.*merged: FAILED"):
        run_export(cfg, adapter, tmp_path / "out", ["merged"], max_new_tokens=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_bad_format_and_adapter_are_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [f"model.path={tiny_model_dir}"])
    with pytest.raises(KefuError, match=r"unknown format.*tflite"):
        run_export(cfg, tmp_path, tmp_path / "out", ["tflite"])
    with pytest.raises(KefuError, match="not a LoRA adapter folder"):
        run_export(cfg, tmp_path, tmp_path / "out", ["merged"])


def test_cli_export_exits_non_zero_on_a_missing_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "kefu", "export", "--adapter", str(tmp_path / "none"), "--out", str(tmp_path / "o"),
         "--set", f"model.path={tiny_model_dir}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "not a LoRA adapter folder" in " ".join(run.stderr.split())
    assert not (tmp_path / "o").exists()
