"""Training/serving parity for the shop's own actions (actions.model_calls): for every model turn of the sample
shop's tool-use conversations (data/sft_tools.jsonl, format openai), the prompt the answer pipeline hands the local
engine is, token for token, the prompt SFT trains that turn on: the conversation read by the data reader, masked as
`kefu data prepare` masks it (serving masks the customer's words too) and encoded by kefu.train.tokenize, the
actions rendered by the model's own chat template in both (Qwen2.5's and Llama 3.x's tool formats)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.hf import HFEngine
from kefu.answer.pipeline import AnswerPipeline
from kefu.answer.templates import apply_template
from kefu.answer.toolcalls import tool_format
from kefu.config import KefuConfig, load_config
from kefu.data.formats import convert
from kefu.data.persona import system_prompt
from kefu.data.prepare import mask_pii
from kefu.data.schema import Conversation
from kefu.train.tokenize import IGNORE, encode_conversation

SHOP = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop"


def _prepared(cfg: KefuConfig) -> list[Conversation]:
    """The tool-use conversations as training reads them: converted from the openai format, PII-masked."""
    lines = (SHOP / "data" / "sft_tools.jsonl").read_text(encoding="utf-8").splitlines()
    convs = [convert(json.loads(line), "openai").item for line in lines]
    assert all(isinstance(c, Conversation) and c.tools for c in convs)
    mask_pii(convs, [], cfg.data.pii)  # type: ignore[arg-type]
    return convs  # type: ignore[return-value]


def _cfg(tmp_path: Path) -> KefuConfig:
    """The sample shop with the model deciding every action (no trigger words) and no knowledge base, so the
    system prompt is the persona's on both sides (retrieval-aware training has its own parity test). The token
    budget is the tiny tokenizer's: its 400-token vocabulary spends ~3,000 tokens on the prompt of one turn."""
    overrides = ["kb.sources=[]", "actions.model_calls=true", "serve.session_token_budget=16384"]
    cfg = load_config(SHOP / "kefu.yaml", overrides)
    cfg.root = tmp_path
    for action in cfg.actions.tools:
        action.triggers = []
    return cfg


@pytest.fixture(params=["qwen", "llama3"])
def engine(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Iterator[HFEngine]:
    tok = apply_template(AutoTokenizer.from_pretrained(tiny_model_dir), request.param)
    engine = HFEngine(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), tok)
    yield engine
    asyncio.run(engine.close())


def _served_ids(pipeline: AnswerPipeline, engine: HFEngine, turns: list[dict[str, Any]]) -> list[int]:
    """The prompt ids the local engine computes for a customer's request: screen, ground, the engine's params."""
    prep = pipeline.screen(turns, customer_id="C1011")
    assert prep.action == "answer" and prep.call is None, turns[-1]  # the model is asked, no rule or notice
    pipeline.ground(prep)
    return engine.prompt_ids(prep.messages, pipeline.engine_params(prep, GenParams()))


def test_served_prompt_is_the_trained_prompt(engine: HFEngine, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    pipeline = AnswerPipeline(cfg, engine)
    compared = 0
    # The embedded default's Qwen2.5 format on every conversation; Llama 3.x on every fifth (the same kinds, in a
    # tenth of the time: encoding is the tiny tokenizer's ~3,000 tokens a prompt).
    step = 1 if tool_format(engine.tok) == "qwen" else 5
    for conv in _prepared(cfg)[::step]:
        assert conv.tools == pipeline.actions.tools()  # the data's tools are the shop's actions, key order too
        enc = encode_conversation(engine.tok, conv, system=system_prompt(cfg.persona), cot=False, max_len=8192)
        labels = enc["labels"]
        starts = [i for i in range(1, len(labels)) if labels[i] != IGNORE and labels[i - 1] == IGNORE]
        answers = [j for j, t in enumerate(conv.turns) if t.role == "assistant" and t.weight]  # the model's turns
        assert len(starts) == len(answers)
        for j, start in zip(answers, starts, strict=True):
            before = conv.turns[:j]
            assert not any(t.tool_calls or t.role == "tool" for t in before)  # the pipeline answers after a result
            turns = [{"role": t.role, "content": t.content} for t in before]
            assert _served_ids(pipeline, engine, turns) == enc["input_ids"][:start], turns
            compared += 1
    assert compared >= 170 // step  # every conversation's first answer, and the call after the order number given
