"""The onnxruntime-genai CPU engine on a tiny Qwen2 exported by kefu's converter: the same greedy tokens as
transformers (fp32 export), streaming, the stop rule, concurrency, seeded sampling, prefix reuse, adapter versions."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.onnx import OnnxEngine
from kefu.answer.onnx_export import ensure_export, export_key, folder_identity
from kefu.errors import KefuError
from tests.tiny import build_tiny_qwen2

pytest.importorskip("onnxruntime_genai")
QUESTIONS = ["你好", "退货怎么办", "Hello there", "发票", "物流到哪了", "优惠券能叠加吗"]


def _tok(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _engine(model_dir: Path, cache: Path, precision: str = "fp32") -> OnnxEngine:
    def export(target: str | None) -> Path:
        return ensure_export(model_dir, cache, precision, Path(target) if target else None)

    return OnnxEngine(export, _tok(model_dir), max_active=8)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny Qwen2 at hidden 64 (onnxruntime's CPU attention needs a head size that is a multiple of 16),
    re-drawn with larger weights: at the default init it answers one token over and over, which tests nothing."""
    import torch
    from transformers import AutoModelForCausalLM

    path = build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2-h64"), hidden=64)
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, cache: Path) -> OnnxEngine:
    return _engine(tiny_model_dir, cache)


async def _answer(engine: OnnxEngine, q: str, **kw: Any) -> tuple[str, str | None, int, int]:
    text, last, pieces = "", None, 0
    async for c in engine.stream([{"role": "user", "content": q}], GenParams(**{"max_tokens": 12, **kw})):
        text, last, pieces = text + c.text, c, pieces + 1
    assert last is not None and (pieces >= 2 or last.completion_tokens <= 1)  # streamed, not one blob at the end
    return text, last.finish_reason, last.completion_tokens, last.prompt_tokens


def _hf_greedy_ids(model: Any, tok: Any, q: str, n: int) -> list[int]:
    import torch

    prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return [int(t) for t in out[0, ids.shape[1] :]]


def _hf_greedy(model: Any, tok: Any, q: str, n: int) -> str:
    return str(tok.decode(_hf_greedy_ids(model, tok, q, n), skip_special_tokens=True))


def test_fp32_export_decodes_exactly_as_transformers(engine: OnnxEngine, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = _tok(tiny_model_dir)
    for q in QUESTIONS[:3]:
        text, finish, n, n_prompt = asyncio.run(_answer(engine, q))
        assert (finish, n) == ("length", 12)
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        assert n_prompt == engine.count_tokens(prompt)
        assert text == _hf_greedy(model, tok, q, 12)


def test_concurrent_requests_interleave_and_match_solo(engine: OnnxEngine) -> None:
    async def go() -> tuple[list[Any], list[Any]]:
        # The worker is stopped while the requests queue up and restarted once all are waiting: otherwise on a busy
        # machine the first answer can finish before the last request is tokenized, and nothing overlaps.
        engine._pending.put(None)
        engine._thread.join()
        tasks = [asyncio.create_task(_answer(engine, q)) for q in QUESTIONS]
        while engine._pending.qsize() < len(QUESTIONS):
            await asyncio.sleep(0.001)
        engine._thread = threading.Thread(target=engine._loop, daemon=True)
        engine._thread.start()
        together = await asyncio.gather(*tasks)
        alone = [await _answer(engine, q) for q in QUESTIONS]
        return together, alone

    together, alone = asyncio.run(go())
    assert together == alone
    assert engine.max_concurrent == len(QUESTIONS)


def test_stop_token_ends_the_answer(tiny_model_dir: Path, cache: Path) -> None:
    from transformers import AutoModelForCausalLM

    engine = _engine(tiny_model_dir, cache)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    first, second = _hf_greedy_ids(model, engine.tok, "你好", 2)
    engine._versions[None].eos.add(second)  # as if the template's end-of-turn id came second
    text, finish, n, _ = asyncio.run(_answer(engine, "你好", max_tokens=6))
    assert (finish, n) == ("stop", 1) and text == engine.tok.decode([first], skip_special_tokens=True)


def test_seeded_sampling_is_reproducible(engine: OnnxEngine) -> None:
    async def go() -> list[Any]:
        kw = {"temperature": 1.0, "top_p": 0.9}
        return [await _answer(engine, "你好", seed=s, **kw) for s in (1, 1, 2)]

    a, b, c = asyncio.run(go())
    assert a == b and a != c


def test_prefix_reuse_gives_the_same_tokens(tiny_model_dir: Path, cache: Path) -> None:
    system = {"role": "system", "content": "七天无理由退货，签收后7天内可申请，商品需保持完好。" * 3}
    params = GenParams(max_tokens=8)

    async def ask(engine: OnnxEngine, q: str) -> str:
        return "".join([c.text async for c in engine.stream([system, {"role": "user", "content": q}], params)])

    warm = _engine(tiny_model_dir, cache)
    asyncio.run(ask(warm, "发票"))
    reused = asyncio.run(ask(warm, "Hello there"))
    assert warm.prefix_hits == 1
    assert reused == asyncio.run(ask(_engine(tiny_model_dir, cache), "Hello there"))


def _make_adapter(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():  # make the adapter matter: random, large B matrices
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 5.0)
    peft_model.save_pretrained(out)
    return out


def test_adapter_version_is_merged_once_and_served_beside_the_base(
    engine: OnnxEngine, tiny_model_dir: Path, cache: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = _make_adapter(tiny_model_dir, tmp_path / "adapter")
    exports = len(list(cache.iterdir()))
    asyncio.run(engine.prepare_model(str(adapter)))
    assert len(list(cache.iterdir())) == exports + 1
    assert ensure_export(tiny_model_dir, cache, "fp32", adapter) in cache.iterdir()  # cached: no second export
    tuned = asyncio.run(_answer(engine, "你好", model=str(adapter)))[0]
    base = asyncio.run(_answer(engine, "你好"))[0]
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter))
    assert tuned != base
    assert tuned == _hf_greedy(merged.merge_and_unload().eval(), _tok(tiny_model_dir), "你好", 12)


def test_int8_export_answers(tiny_model_dir: Path, cache: Path) -> None:
    text, finish, n, _ = asyncio.run(_answer(_engine(tiny_model_dir, cache, "int8"), "你好"))
    assert (finish, n) == ("length", 12) and text


def test_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"architectures": ["NoSuchModel"], "num_hidden_layers": 1}')
    with pytest.raises(KefuError, match=r"onnx export .* failed"):
        ensure_export(bad, tmp_path / "cache", "int4")
    assert list((tmp_path / "cache").iterdir()) == []


def test_open_engine_picks_the_onnx_runtime_on_cpu_where_the_model_allows(
    tiny_model_dir: Path, cache: Path, tmp_path: Path
) -> None:
    from kefu.answer.engines import local_runtime, open_engine
    from kefu.config import load_config
    from tests.tiny import build_tiny_qwen2

    def cfg(path: Path, *more: str) -> Any:
        return load_config(None, [f"model.path={path}", "model.device=cpu", f"model.cache_dir={tmp_path}", *more])

    engine = open_engine(cfg(tiny_model_dir))
    assert isinstance(engine, OnnxEngine) and local_runtime(cfg(tiny_model_dir)) == "onnx-int8"
    _, finish, n, _ = asyncio.run(_answer(engine, "你好", max_tokens=4))
    assert (finish, n) == ("length", 4)
    # 'auto' exported the int8 model it names, not int4
    int8 = export_key(folder_identity(tiny_model_dir), None, "int8")
    assert [p.name for p in (tmp_path / "onnx").iterdir() if not p.name.startswith(".")] == [int8]
    assert local_runtime(cfg(tiny_model_dir, "model.runtime=transformers")) == "transformers"
    narrow = build_tiny_qwen2(tmp_path / "narrow")  # head size 8: onnxruntime's CPU attention refuses it
    assert local_runtime(cfg(narrow)) == "transformers"
    with pytest.raises(KefuError, match="head size 8"):
        local_runtime(cfg(narrow, "model.runtime=onnx-int4"))
    _cli_eval_says_onnx_int8(tiny_model_dir, tmp_path, [int8])


def _cli_eval_says_onnx_int8(model_dir: Path, tmp_path: Path, exports: list[str]) -> None:
    """`kefu eval` names the ONNX int8 engine in its first line, and answers with that export (no second one)."""
    import yaml
    from typer.testing import CliRunner

    from kefu.cli import app
    from kefu.data.schema import EvalCase, Turn

    hello = EvalCase(id="c1", category="policy", turns=[Turn(role="user", content="你好")], reference="您好")
    (tmp_path / "cases.jsonl").write_text(hello.model_dump_json() + "\n", encoding="utf-8")
    tree = {"model": {"path": str(model_dir), "device": "cpu", "cache_dir": str(tmp_path)},
            "eval": {"cases": "cases.jsonl", "max_new_tokens": 4}}  # fmt: skip
    (tmp_path / "kefu.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    r = CliRunner().invoke(app, ["eval", "-c", str(tmp_path / "kefu.yaml"), "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0].startswith("answers: onnx int8 (auto: model.device=cpu, so the ONNX CPU engine")
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert [p.name for p in (tmp_path / "onnx").iterdir() if not p.name.startswith(".")] == exports


def test_a_version_that_cannot_load_is_unavailable_not_a_crash(engine: OnnxEngine, tmp_path: Path) -> None:
    from kefu.answer.engines.base import EngineUnavailable

    with pytest.raises(EngineUnavailable, match=r"model version .*missing"):
        asyncio.run(_answer(engine, "你好", model=str(tmp_path / "missing")))
    assert asyncio.run(_answer(engine, "你好"))[1] == "length"  # the base keeps answering


def test_the_session_runs_one_thread_per_physical_core() -> None:
    # Left to onnxruntime-genai, a 2-core machine ran the model on one thread (half the prefill speed).
    import os

    from kefu.answer.engines.onnx import _session_options
    from kefu.answer.model import cpu_cores

    threads = _session_options()["model"]["decoder"]["session_options"]["intra_op_num_threads"]
    assert threads == cpu_cores()
    assert 1 <= threads <= len(os.sched_getaffinity(0))


def test_a_cgroup_cpu_quota_caps_the_threads(tmp_path: Path) -> None:
    from kefu.answer.model import cgroup_cpu_quota

    limit = tmp_path / "cpu.max"
    for text, cpus in (("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("5000 100000", 1)):
        limit.write_text(text)
        assert cgroup_cpu_quota(limit) == cpus, text
    assert cgroup_cpu_quota(tmp_path / "absent") is None
