"""Tool-use conversations in training: rendered by the model's own template (Qwen2.5 <tool_call> JSON, Llama 3.x
JSON), the loss on the assistant's calls and answers and never on tool results, other templates refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from kefu.answer.templates import apply_template
from kefu.data.schema import Conversation, ToolCall, Turn
from kefu.errors import KefuError
from kefu.train.tokenize import IGNORE, encode_conversation
from tests.train.test_tokenize import answer_texts

PARAMS = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
TOOLS = [{"type": "function", "function": {"name": "get_order", "description": "查询订单状态", "parameters": PARAMS}}]
RESULT = '{"status": "已发货", "carrier": "顺丰"}'
CONV = Conversation(
    tools=TOOLS,
    turns=[
        Turn(role="user", content="我的订单 DD20260101 到哪了"),
        Turn(role="assistant", content="", tool_calls=[ToolCall(id="c1", name="get_order",
                                                                arguments={"order_id": "DD20260101"})]),
        Turn(role="tool", content=RESULT, tool_call_id="c1"),
        Turn(role="assistant", content="您的订单已发货，顺丰承运。"),
    ],
)  # fmt: skip


def _tok(model_dir: Path, template: str) -> Any:
    return apply_template(AutoTokenizer.from_pretrained(model_dir), template)


@pytest.mark.parametrize(
    ("template", "learned"),
    [
        ("qwen", ['<tool_call>\n{"name": "get_order", "arguments": {"order_id": "DD20260101"}}\n</tool_call><|im_end|>',
                  "您的订单已发货，顺丰承运。<|im_end|>"]),
        ("llama3", ['{"name": "get_order", "parameters": {"order_id": "DD20260101"}}<|eot_id|>',
                    "您的订单已发货，顺丰承运。<|eot_id|>"]),
    ],
)  # fmt: skip
def test_loss_on_calls_and_answers_never_on_tool_results(
    tiny_model_dir: Path, template: str, learned: list[str]
) -> None:
    tok = _tok(tiny_model_dir, template)
    enc = encode_conversation(tok, CONV, system="你是小禾。", cot=False, max_len=2048)
    assert answer_texts(tok, enc) == learned
    text = tok.decode(enc["input_ids"])
    assert '"name": "get_order"' in text.split(learned[0])[0]  # the tool definitions are in the prompt
    result_at = text.index(RESULT)
    seen = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab == IGNORE])
    assert RESULT in seen and result_at > 0  # the tool result is given, not learned


def test_two_results_after_parallel_calls_are_one_user_turn_in_qwen(tiny_model_dir: Path) -> None:
    calls = [ToolCall(id=f"c{i}", name="get_order", arguments={"order_id": f"DD{i}"}) for i in (1, 2)]
    conv = Conversation(tools=TOOLS, turns=[
        CONV.turns[0], Turn(role="assistant", content="我查一下。", tool_calls=calls),
        Turn(role="tool", content="r1", tool_call_id="c1"), Turn(role="tool", content="r2", tool_call_id="c2"),
        CONV.turns[3]])  # fmt: skip
    tok = _tok(tiny_model_dir, "qwen")
    enc = encode_conversation(tok, conv, system=None, cot=False, max_len=2048)
    first = answer_texts(tok, enc)[0]
    assert first.startswith("我查一下。\n<tool_call>") and first.count("<tool_call>") == 2
    results = "<|im_start|>user\n<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response>"
    assert results + "<|im_end|>" in tok.decode(enc["input_ids"])


@pytest.mark.parametrize("template", ["gemma", "deepseek-r1"])
def test_templates_without_tool_calling_are_refused(tiny_model_dir: Path, template: str) -> None:
    tok = _tok(tiny_model_dir, template)
    with pytest.raises(KefuError, match="does not render tool calls in a format kefu can parse back"):
        encode_conversation(tok, CONV, system=None, cot=False, max_len=2048)


def test_a_template_that_drops_tools_is_refused_not_trained_without_them(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)  # the tiny model's own bare ChatML: renders no tools
    with pytest.raises(KefuError, match=r"set model\.template to qwen or llama3"):
        encode_conversation(tok, CONV, system=None, cot=False, max_len=2048)
    plain = Conversation(turns=[CONV.turns[0], CONV.turns[3]])  # no tools: trains as before
    assert encode_conversation(tok, plain, system=None, cot=False, max_len=2048)["input_ids"]


def test_weight_0_turns_are_context_not_learned(tiny_model_dir: Path) -> None:
    """The reply after a tool result is the serving pipeline's (weight 0): only the call is learned, and nothing
    after the last learned turn is encoded; a conversation with nothing of weight 1 is refused."""
    tok = _tok(tiny_model_dir, "qwen")
    turns = [*CONV.turns[:3], CONV.turns[3].model_copy(update={"weight": 0})]
    enc = encode_conversation(
        tok, CONV.model_copy(update={"turns": turns}), system="你是小禾。", cot=False, max_len=2048
    )
    assert answer_texts(tok, enc) == [
        '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "DD20260101"}}\n</tool_call><|im_end|>'
    ]
    assert tok.decode(enc["input_ids"]).endswith("</tool_call><|im_end|>")
    middle = [*turns[:3], turns[3].model_copy(update={"weight": 1}), Turn(role="user", content="谢谢"),
              Turn(role="assistant", content="不客气", weight=0)]  # fmt: skip
    enc = encode_conversation(tok, CONV.model_copy(update={"turns": middle}), system=None, cot=False, max_len=2048)
    assert answer_texts(tok, enc)[1:] == ["您的订单已发货，顺丰承运。<|im_end|>"]
    silent = [Turn(role="user", content="在吗"), Turn(role="assistant", content="在的", weight=0)]
    with pytest.raises(KefuError, match="none of weight 1"):
        encode_conversation(tok, Conversation(turns=silent), system=None, cot=False, max_len=2048)
