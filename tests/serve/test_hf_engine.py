"""The local transformers engine on a tiny Qwen2: batching, determinism, cancellation, adapter hot-swap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.serve.conftest import make_cfg, start

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.hf import HFEngine
from kefu.serve.app import create_app


def _load(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture
def hf(tiny_model_dir: Path) -> HFEngine:
    model, tok = _load(tiny_model_dir)
    return HFEngine(model, tok, max_batch=8, batch_wait_ms=20)


async def _answer(engine: HFEngine, q: str, **kw: Any) -> tuple[str, str | None, int]:
    text, last = "", None
    async for c in engine.stream([{"role": "user", "content": q}], GenParams(**{"max_tokens": 10, **kw})):
        text, last = text + c.text, c
    assert last is not None
    return text, last.finish_reason, last.completion_tokens


def test_concurrent_requests_are_batched_and_match_solo(hf: HFEngine) -> None:
    questions = ["你好", "退货怎么办", "Hello there", "发票", "物流到哪了", "优惠券能叠加吗"]

    async def go() -> tuple[list[Any], list[Any]]:
        together = await asyncio.gather(*(_answer(hf, q) for q in questions))
        alone = [await _answer(hf, q) for q in questions]
        return together, alone

    together, alone = asyncio.run(go())
    assert together == alone  # left padding + position ids: batching does not change greedy output
    assert max(hf.batch_sizes) >= 4 and all(n == 10 and f == "length" for _, f, n in together)


def test_prefill_applies_the_lm_head_to_the_last_position_only(hf: HFEngine) -> None:
    """Batched or alone, with or without a reused prefix: the head sees one position per prompt, never the whole
    prompt (whose fp32 logits at batch 12 x 700 tokens would be 5 GB)."""
    positions: list[int] = []
    hook = hf.model.lm_head.register_forward_hook(lambda _m, args, _out: positions.append(args[0].shape[1]))
    try:

        async def go() -> None:
            await asyncio.gather(*(_answer(hf, q * 20) for q in ("你好", "退货怎么办", "发票")))
            await _answer(hf, "你好" * 20)
            await _answer(hf, "你好" * 20 + "？")  # reuses the cached prefix

        asyncio.run(go())
    finally:
        hook.remove()
    assert positions and set(positions) == {1} and hf.prefix_hits >= 1


def test_seeded_sampling_is_reproducible(hf: HFEngine) -> None:
    async def go() -> list[Any]:
        kw = {"temperature": 1.0, "top_p": 0.9}
        return [await _answer(hf, "你好", seed=s, **kw) for s in (1, 1, 2)]

    a, b, c = asyncio.run(go())
    assert a == b and a != c


def test_cancel_stops_generation(hf: HFEngine) -> None:
    async def full() -> float:
        t0 = time.perf_counter()
        await _answer(hf, "你好", max_tokens=120)
        return time.perf_counter() - t0

    async def cancelled_then_next() -> float:
        agen = hf.stream([{"role": "user", "content": "你好"}], GenParams(max_tokens=120))
        await agen.__anext__()
        t0 = time.perf_counter()
        await agen.aclose()  # what a client disconnect or a stop sequence does
        await _answer(hf, "hi", max_tokens=3)  # waits behind the cancelled batch only until it notices
        return time.perf_counter() - t0

    t_full = asyncio.run(full())
    t_next = asyncio.run(cancelled_then_next())
    assert t_next < t_full / 3, (t_next, t_full)


def _make_adapter(model_dir: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = _load(model_dir)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():  # make the adapter matter: random, large B matrices
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 5.0)
    peft_model.save_pretrained(out)
    return out


def test_adapter_hot_swap_through_the_api(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tok = _load(tiny_model_dir)
    adapter = _make_adapter(tiny_model_dir, tmp_path / "adapter")
    srv = start(create_app(make_cfg(tmp_path, "serve.max_new_tokens=8"), HFEngine(model, tok)))
    try:
        client = openai.OpenAI(base_url=srv.base, api_key=srv.key(rate_limit=1000), max_retries=0)
        admin = openai.OpenAI(base_url=srv.url, api_key=srv.key("admin"), max_retries=0)

        def ask(model_name: str = "kefu") -> str:
            msgs = [{"role": "user", "content": "你好"}]
            return client.chat.completions.create(model=model_name, messages=msgs).choices[0].message.content or ""

        base_answer = ask()
        admin.post("/v1/admin/models", cast_to=object, body={"name": "lora1", "kind": "adapter", "path": str(adapter)})
        admin.post("/v1/admin/models/lora1/promote", cast_to=object, body={"percent": 100})
        tuned = ask()
        assert tuned != base_answer  # the adapter answers now, without a restart
        admin.post("/v1/admin/models/rollback", cast_to=object, body={})
        assert ask() == base_answer  # base weights again (adapter disabled, not merged)
        assert ask("base") == base_answer
    finally:
        srv.stop()


def test_prefix_cache_gives_the_same_tokens(hf: HFEngine) -> None:
    """A second prompt sharing the system prompt reuses its KV cache and decodes exactly as a cold prefill."""
    system = {"role": "system", "content": "你是青禾生活馆的智能客服小禾。七天无理由退货，48小时内发货。" * 3}

    async def ask(q: str) -> str:
        text = ""
        async for c in hf.stream([system, {"role": "user", "content": q}], GenParams(max_tokens=12)):
            text += c.text
        return text

    async def go() -> tuple[str, str, str]:
        a = await ask("退货怎么办")
        b = await ask("发票怎么开")  # shares the system prompt with the previous request
        hf._prefix.clear()
        cold = await ask("发票怎么开")
        return a, b, cold

    _, warm, cold = asyncio.run(go())
    assert warm == cold and hf.prefix_hits >= 1


def test_merged_model_version(hf: HFEngine, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A merged-model version loads beside the base model and answers with its own weights."""
    model, tok = _load(tiny_model_dir)
    merged = tmp_path / "merged"
    model.save_pretrained(merged)
    tok.save_pretrained(merged)

    async def go() -> tuple[str, str]:
        await hf.prepare_model(str(merged))
        base = await _answer(hf, "你好")
        other = await _answer(hf, "你好", model=str(merged))
        return base[0], other[0]

    base, other = asyncio.run(go())
    assert base == other and str(merged) in hf._merged  # same weights saved, so the same greedy answer


def test_repetition_penalty_matches_transformers_generate(tiny_model_dir: Path) -> None:
    import torch

    model, tok = _load(tiny_model_dir)
    model.generation_config.repetition_penalty = 1.5
    engine = HFEngine(model, tok, max_batch=1, batch_wait_ms=1)
    text, _, n = asyncio.run(_answer(engine, "你好", max_tokens=12))
    ids = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, return_dict=True)
    prompt = torch.tensor([ids["input_ids"]])
    with torch.inference_mode():
        out = model.generate(prompt, max_new_tokens=12, do_sample=False, repetition_penalty=1.5)
    new = [t for t in out[0, prompt.shape[1] :].tolist() if t not in {tok.eos_token_id, tok.pad_token_id}]
    assert text == tok.decode(new, skip_special_tokens=True) and n == len(new)


def test_penalize_divides_positive_and_multiplies_negative_seen_logits() -> None:
    import torch

    from kefu.answer.engines.hf import penalize

    out = penalize(torch.tensor([2.0, -2.0, 1.0, -1.0]), [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0, -1.0]


def test_serving_engine_uses_bf16_on_a_cpu_that_has_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    """dtype 'auto' serves in bf16 where the CPU computes it natively (half the time to first token of fp32 for the
    default model), fp32 elsewhere; an explicit dtype is kept. Versions loaded later follow the base model."""
    import torch

    from kefu.answer.model import cpu_has_native_bf16

    auto = HFEngine.from_config(make_cfg(tmp_path, f"model.path={tiny_model_dir}"))
    explicit = HFEngine.from_config(make_cfg(tmp_path, f"model.path={tiny_model_dir}", "model.dtype=float32"))
    try:
        assert auto.model.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
        assert explicit.model.dtype == torch.float32
        auto._ensure(str(tiny_model_dir))  # a merged-model version
        assert auto._merged[str(tiny_model_dir)][0].dtype == auto.model.dtype
        _, finish, tokens = asyncio.run(_answer(auto, "你好", max_tokens=4))
        assert finish is not None and tokens >= 1
    finally:
        asyncio.run(auto.close())
        asyncio.run(explicit.close())
