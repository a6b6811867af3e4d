"""Tool calls on a real (tiny) transformers model: training and serving render a tool conversation to the same token
ids (parity), and a model trained on one tool-use conversation, served by `kefu serve`, gives its call back to the
real `openai` client as tool_calls, then answers from the tool result the client sends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.serve.conftest import make_cfg, start
from transformers import AutoModelForCausalLM, AutoTokenizer

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.hf import HFEngine
from kefu.answer.pipeline import AnswerPipeline
from kefu.answer.templates import apply_template
from kefu.config import KefuConfig
from kefu.data.formats import convert
from kefu.data.schema import Conversation
from kefu.serve.app import create_app
from kefu.serve.messages import conversation_turns
from kefu.serve.protocol import ChatMessage
from kefu.train.tokenize import IGNORE, encode_conversation

PARAMS = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
TOOLS: Any = [{"type": "function", "function": {"name": "get_order", "description": "查询订单", "parameters": PARAMS}}]
RESULT = '{"status": "shipped"}'
ANSWER = "您的订单已发货。"
MESSAGES: Any = [  # the OpenAI shape, as a client sends it and as training data holds it
    {"role": "user", "content": "我的订单 DD20260101 到哪了"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
     "function": {"name": "get_order", "arguments": '{"order_id": "DD20260101"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
    {"role": "assistant", "content": ANSWER},
]  # fmt: skip


def _load(model_dir: Path, template: str) -> tuple[Any, Any]:
    tok = apply_template(AutoTokenizer.from_pretrained(model_dir), template)
    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), tok


def _served_messages(
    cfg: KefuConfig, engine: HFEngine, upto: int, raw: bool = True
) -> tuple[list[dict[str, Any]], GenParams]:
    """What `kefu serve` hands the engine for the request holding MESSAGES[:upto] (the same code path: the
    request's turns, then the answer pipeline's screen, tools and prompt)."""
    turns = conversation_turns([ChatMessage.model_validate(m) for m in MESSAGES[:upto]])
    pipeline = AnswerPipeline(cfg, engine, raw=raw)
    prep = pipeline.screen(turns)
    asyncio.run(pipeline.use_tools(prep, TOOLS, None))
    pipeline.ground(prep)
    return prep.messages, GenParams(tools=prep.tools)


def _encoded(tok: Any, system: str) -> dict[str, list[int]]:
    """The conversation as training encodes it: read by the data reader, rendered with the serving system prompt."""
    conv = convert({"messages": MESSAGES, "tools": TOOLS}, "openai").item
    assert isinstance(conv, Conversation)
    return encode_conversation(tok, conv, system=system, cot=False, max_len=8192)


@pytest.mark.parametrize("template", ["qwen", "llama3"])
def test_training_and_serving_render_the_same_ids(tiny_model_dir: Path, tmp_path: Path, template: str) -> None:
    model, tok = _load(tiny_model_dir, template)
    engine, cfg = HFEngine(model, tok), make_cfg(tmp_path)
    try:
        first, _ = _served_messages(cfg, engine, 1)
        enc = _encoded(tok, first[0]["content"])
        starts = [i for i, lab in enumerate(enc["labels"]) if lab != IGNORE and enc["labels"][i - 1] == IGNORE]
        assert len(starts) == 2  # the call, then the answer
        for upto, start in zip((1, 3), starts, strict=True):
            messages, params = _served_messages(cfg, engine, upto)
            assert engine.prompt_ids(messages, params) == enc["input_ids"][:start], f"request of {upto} messages"
    finally:
        asyncio.run(engine.close())


def _train(model: Any, enc: dict[str, list[int]], steps: int = 300) -> float:
    """Full fine-tuning on one sample until it is memorised (~100 steps, ~0.25 s each on one core)."""
    import torch

    ids, labels = torch.tensor([enc["input_ids"]]), torch.tensor([enc["labels"]])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 30k-parameter model: more threads only contend on a busy machine
    model.train()
    try:
        for _ in range(steps):
            loss = model(input_ids=ids, labels=labels).loss
            if loss.item() < 0.01:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        model.eval()
        torch.set_num_threads(threads)
    return float(loss.item())


def test_a_trained_model_calls_the_clients_tool_through_the_api(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tok = _load(tiny_model_dir, "qwen")
    cfg = make_cfg(tmp_path, "persona.system_prompt=你是小禾。")  # a short prompt: fewer tokens to learn from
    engine = HFEngine(model, tok)
    first, _ = _served_messages(cfg, engine, 1, raw=False)  # the system prompt the gateway will send
    assert _train(model, _encoded(tok, first[0]["content"])) < 0.05
    server = start(create_app(cfg, engine))
    try:
        client = openai.OpenAI(base_url=server.base, api_key=server.key(), max_retries=0)
        r = client.chat.completions.create(model="kefu", messages=MESSAGES[:1], tools=TOOLS, max_tokens=200)
        (call,) = r.choices[0].message.tool_calls or []
        assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "get_order"
        assert json.loads(call.function.arguments) == {"order_id": "DD20260101"}
        history = [*MESSAGES[:1], r.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": RESULT}]  # fmt: skip
        chunks = list(client.chat.completions.create(model="kefu", messages=history, tools=TOOLS, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    finally:
        server.stop()


def test_served_params_carry_the_tools(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tok = _load(tiny_model_dir, "qwen")
    engine = HFEngine(model, tok)
    try:
        messages, params = _served_messages(make_cfg(tmp_path), engine, 1)
        text = tok.decode(engine.prompt_ids(messages, dataclasses.replace(params)))
        assert '"name": "get_order"' in text and text.endswith("<|im_start|>assistant\n")
    finally:
        asyncio.run(engine.close())
