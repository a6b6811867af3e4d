"""The model's own call of a shop action (actions.model_calls): read in the model's own format while the answer
streams (Qwen2.5 <tool_call> JSON, Llama 3.x JSON), run in place of the answer, and never shown to the customer."""

from __future__ import annotations

import asyncio
import json

import pytest

from kefu.answer.acting import divert_calls
from kefu.answer.actions import ActionCall
from kefu.answer.engines.base import Chunk, GenParams
from kefu.answer.engines.scripted import ScriptedEngine
from kefu.answer.toolcalls import CallSplitter, ToolFormat, split_calls
from kefu.data.schema import ToolCall

ARGS = {"order_id": "DD2026120200003"}
QWEN_CALL = "<tool_call>\n" + json.dumps({"name": "order_status", "arguments": ARGS}) + "\n</tool_call>"
CALLED = [ActionCall("order_status", ARGS, "model")]


def diverted(
    reply: str, fmt: ToolFormat = "qwen", names: frozenset[str] = frozenset()
) -> tuple[str, list[ActionCall | None], ScriptedEngine]:
    """The text the customer gets for a scripted model's `reply` (streamed a character at a time), the calls run;
    `names`: the tools offered (bare calls are read only then)."""
    engine, seen = ScriptedEngine(), []
    engine.queue(reply)

    async def run(call: ActionCall | None) -> str:
        seen.append(call)
        return "REPLY"

    async def read() -> str:
        chunks = engine.stream([{"role": "user", "content": "?"}], GenParams())
        return "".join([c.text async for c in divert_calls(chunks, CallSplitter(fmt, names=names), run)])

    return asyncio.run(read()), seen, engine


def test_a_call_is_run_in_place_of_the_answer_and_generation_stops() -> None:
    text, seen, engine = diverted(QWEN_CALL + " and more the model would have said")
    assert (text, seen) == ("REPLY", CALLED)
    assert engine.calls[0].cancelled  # generation stopped at </tool_call>


def test_text_before_the_call_is_kept_the_call_is_not() -> None:
    text, seen, _ = diverted("我查一下。" + QWEN_CALL)
    assert (text, seen) == ("我查一下。REPLY", CALLED)


def test_llama3_calls_are_read_in_their_own_format() -> None:
    text, seen, _ = diverted(json.dumps({"name": "order_status", "parameters": ARGS}), "llama3")
    assert (text, seen) == ("REPLY", CALLED)


@pytest.mark.parametrize(
    "reply",
    [
        '<tool_call>{"name": "order_status", "argu',
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"name": 3}</tool_call>',
    ],
)
def test_a_malformed_or_unfinished_call_is_never_shown(reply: str) -> None:
    text, seen, _ = diverted(reply)
    assert (text, seen) == ("REPLY", [None])  # run as unparseable: the customer is asked for a valid number


@pytest.mark.parametrize(("reply", "fmt"), [("<tool>不是调用</tool>", "qwen"), ("您好，订单已发货。", "llama3")])
def test_answers_that_only_look_like_calls_pass_through(reply: str, fmt: ToolFormat) -> None:
    text, seen, _ = diverted(reply, fmt)
    assert (text, seen) == (reply, [])


# A model that has not learnt its call token writes junk in its place, then the call's JSON (the trained default
# wrote "-offsetof" for <tool_call>): with the tools' names known, it is still a call, and never text.
OFFERED = frozenset({"order_status", "order_tracking"})
BARE = "-offsetof" + json.dumps({"name": "order_status", "arguments": ARGS})


def bare(reply: str) -> tuple[str, list[ActionCall | None]]:
    text, seen, _ = diverted(reply, names=OFFERED)
    return text, seen


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        (BARE, "REPLY"),
        (BARE + "\n</tool_call>", "REPLY"),
        ("我查一下。" + BARE, "我查一下。REPLY"),
        ("Let me check.\n" + BARE, "Let me check.\nREPLY"),
        ('  {"name": "order_status", "arguments": ' + json.dumps(ARGS) + "}", "  REPLY"),
    ],
)
def test_a_bare_call_after_junk_is_run_never_shown(reply: str, shown: str) -> None:
    assert bare(reply) == (shown, CALLED)


@pytest.mark.parametrize(
    "reply",
    [
        '-offsetof{"name": "drop_tables", "arguments": {}}',  # not an offered tool
        '-offsetof{"name": "order_status", "argu',  # cut off
        '-offsetof{"name": "order_status", "arguments": {"order_id": }',  # never valid JSON
    ],
)
def test_a_bare_call_that_is_no_offered_call_is_never_shown(reply: str) -> None:
    assert bare(reply) == ("REPLY", [None])


@pytest.mark.parametrize(
    "reply",
    [
        "您好，订单 {order_id} 已发货。",
        'Hello. The key {"name" is not a call} here.',
        "OK. Use the format {name: value}, please.",
        '我们的示例： {"note": 1}',
        "Hello, your order has shipped! Anything else?",
    ],
)
def test_text_with_braces_is_not_taken_for_a_call(reply: str) -> None:
    assert bare(reply) == (reply, [])


def test_a_bare_call_of_a_clients_tool_comes_back_as_its_call() -> None:
    engine = ScriptedEngine()
    engine.queue("-offsetof" + json.dumps({"name": "order_status", "arguments": ARGS}) + "</tool_call>\n")

    async def read() -> list[Chunk | ToolCall]:
        chunks = engine.stream([{"role": "user", "content": "?"}], GenParams())
        return [p async for p in split_calls(chunks, CallSplitter("qwen", names=OFFERED))]

    parts = asyncio.run(read())
    assert "".join(p.text for p in parts if isinstance(p, Chunk)) == ""
    assert [(c.name, c.arguments) for c in parts if isinstance(c, ToolCall)] == [("order_status", ARGS)]


def test_call_arguments_are_unmasked_and_masked_again_at_every_depth() -> None:
    from kefu.answer.acting import ActionStep, _unmasked
    from kefu.answer.actions import ActionResult, Actions
    from kefu.config import load_config
    from kefu.data.pii import mask
    from tests.actions.conftest import ACTIONS_YAML

    said = "杭州市西湖区文三路88号3单元"
    back = _unmasked({"address": "改到[ADDRESS]", "more": {"lines": ["[ADDRESS]", 3]}}, {"[ADDRESS]": said})
    assert back == {"address": f"改到{said}", "more": {"lines": [said, 3]}}
    cfg = load_config(ACTIONS_YAML)
    step = ActionStep(cfg, Actions(cfg.actions, cfg.persona, mask), mask)
    record = step.record(ActionResult(ActionCall("change_address", back, "model"), "ok"))
    assert said not in json.dumps(record, ensure_ascii=False)  # the audit row holds it masked, nested too
    assert record["arguments"]["more"]["lines"][1] == 3
