"""Tool-use records: OpenAI tool_calls + role tool, ShareGPT function_call/observation as LLaMA-Factory writes them,
into one canonical Conversation; malformed records reported with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kefu.config import CleanConfig
from kefu.data.clean import Cleaner
from kefu.data.schema import Conversation
from tests.data.test_formats import jsonl, read_all

ORDER_TOOL = {
    "name": "get_order",
    "description": "查询订单状态",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
}
RESULT = '{"status": "已发货", "carrier": "顺丰"}'
OPENAI = {
    "tools": [{"type": "function", "function": ORDER_TOOL}],
    "messages": [
        {"role": "system", "content": "你是小禾"},
        {"role": "user", "content": "我的订单 DD20260101 到哪了"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_order", "arguments": '{"order_id": "DD20260101"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
        {"role": "assistant", "content": "您的订单已发货，顺丰承运。"},
    ],
}  # fmt: skip
SHAREGPT = {  # LLaMA-Factory's tool-use sample shape: tools and calls as JSON strings
    "system": "你是小禾",
    "tools": json.dumps([ORDER_TOOL], ensure_ascii=False),
    "conversations": [
        {"from": "human", "value": "我的订单 DD20260101 到哪了"},
        {"from": "function_call", "value": '{"name": "get_order", "arguments": {"order_id": "DD20260101"}}'},
        {"from": "observation", "value": RESULT},
        {"from": "gpt", "value": "您的订单已发货，顺丰承运。"},
    ],
}


def shape(conv: Conversation) -> list[tuple[Any, ...]]:
    """Turns without call ids (ShareGPT has none)."""
    return [(t.role, t.content, [(c.name, c.arguments) for c in t.tool_calls]) for t in conv.turns]


def test_openai_tool_calls_and_results(tmp_path: Path) -> None:
    (conv,), problems = read_all(jsonl(tmp_path / "o.jsonl", [OPENAI]))
    assert problems == []
    assert conv.system == "你是小禾" and conv.tools == [{"type": "function", "function": ORDER_TOOL}]
    assert [t.role for t in conv.turns] == ["user", "assistant", "tool", "assistant"]
    call = conv.turns[1].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("call_1", "get_order", {"order_id": "DD20260101"})
    assert conv.turns[1].content == "" and conv.turns[2].tool_call_id == "call_1" and conv.turns[2].content == RESULT


def test_sharegpt_function_call_and_observation_read_like_openai(tmp_path: Path) -> None:
    (a,), pa = read_all(jsonl(tmp_path / "o.jsonl", [OPENAI]))
    (b,), pb = read_all(jsonl(tmp_path / "s.jsonl", [SHAREGPT]))
    assert pa == pb == []
    assert shape(a) == shape(b) and a.tools == b.tools and a.system == b.system


def test_parallel_calls_and_arguments_as_objects(tmp_path: Path) -> None:
    calls = [{"name": "get_order", "arguments": {"order_id": f"DD{i}"}} for i in (1, 2)]
    rec = {**SHAREGPT, "conversations": [
        SHAREGPT["conversations"][0], {"from": "function_call", "value": json.dumps(calls)},
        {"from": "observation", "value": {"DD1": "shipped"}}, SHAREGPT["conversations"][3]]}  # fmt: skip
    (conv,), problems = read_all(jsonl(tmp_path / "p.jsonl", [rec]))
    assert problems == []
    assert [c.arguments["order_id"] for c in conv.turns[1].tool_calls] == ["DD1", "DD2"]
    assert conv.turns[2].content == '{"DD1": "shipped"}'  # a JSON value as a result is kept as its JSON text


def test_malformed_tool_records_name_line_and_field(tmp_path: Path) -> None:
    msgs: list[Any] = OPENAI["messages"]  # type: ignore[assignment]
    bad_args = {**msgs[2], "tool_calls": [{"id": "c", "function": {"name": "get_order", "arguments": "{oops"}}]}
    no_name = {**msgs[2], "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}
    records = [
        OPENAI,
        {"messages": [msgs[1], bad_args, msgs[3], msgs[4]]},
        {"messages": [msgs[1], msgs[3], msgs[4]]},  # a tool result with no call before it
        {"messages": [msgs[1], msgs[2], msgs[4]]},  # a call whose result never comes
        {"messages": [msgs[1], no_name, msgs[3], msgs[4]]},
        {"messages": msgs, "tools": "not json"},
        {"messages": msgs, "tools": [{"description": "no name"}]},
        {"messages": [msgs[1], msgs[2], {**msgs[3], "tool_call_id": "call_9"}, msgs[4]]},
        {"messages": [msgs[1], {**msgs[2], "tool_calls": [1]}, msgs[3], msgs[4]]},
    ]
    path = jsonl(tmp_path / "bad.jsonl", records)
    items, problems = read_all(path)
    assert len(items) == 1
    assert problems == [
        f"{path}:2: messages[1].tool_calls[0].arguments: arguments is not valid JSON: Expecting property name "
        "enclosed in double quotes at char 1",
        f"{path}:3: messages[1].role: role order: a tool result must follow an assistant turn with tool_calls (or "
        "another tool result)",
        f"{path}:4: messages[2].role: role order: a 'assistant' turn follows tool calls: their results (role 'tool') "
        "must come first",
        f"{path}:5: messages[1].tool_calls[0].name: missing field: a tool call needs the function's name",
        f"{path}:6: tools: tools is not valid JSON: Expecting value at char 0",
        f"{path}:7: tools[0].name: missing field: every tool needs a function name",
        f"{path}:8: messages[2].tool_call_id: 'call_9' answers no call of the assistant turn before it",
        f"{path}:9: messages[1].tool_calls[0]: wrong type: expected a call object, got int",
    ]
    calls = SHAREGPT["conversations"]
    sharegpt = [
        {**SHAREGPT, "conversations": [calls[0], {"from": "function_call", "value": "[1]"}, *calls[2:]]},
        {**SHAREGPT, "conversations": [calls[0], {"from": "function_call", "value": "get_order(DD1)"}, *calls[2:]]},
        {**SHAREGPT, "conversations": calls[:2]},  # the call's observation never comes
    ]
    path = jsonl(tmp_path / "bad-sharegpt.jsonl", [SHAREGPT, *sharegpt])
    _, problems = read_all(path)
    assert problems == [
        f"{path}:2: conversations[1].value[0]: wrong type: expected a call object, got int",
        f"{path}:3: conversations[1].value: the function call is not valid JSON: Expecting value at char 0",
        f"{path}:4: conversations: the last turn calls tools but no tool result follows",
    ]


def test_a_turn_that_only_calls_tools_is_not_an_empty_answer(tmp_path: Path) -> None:
    (conv,), _ = read_all(jsonl(tmp_path / "o.jsonl", [OPENAI]))
    cleaner = Cleaner(CleanConfig())
    assert cleaner.keep(conv) is not None and not cleaner.dropped
    assert '"get_order"' in conv.text()  # dedup sees the calls too


def test_prepared_files_keep_the_tool_parts(tmp_path: Path) -> None:
    """`kefu data prepare` writes model_dump(exclude_none) lines that training reads back with model_validate_json."""
    (conv,), _ = read_all(jsonl(tmp_path / "o.jsonl", [OPENAI]))
    line = json.dumps(conv.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    assert Conversation.model_validate_json(line) == conv


def _weighted(weight: Any, at: int = 4) -> dict[str, Any]:
    msgs = [dict(m) for m in OPENAI["messages"]]  # type: ignore[union-attr]
    msgs[at]["weight"] = weight
    return {**OPENAI, "messages": msgs}


def test_openai_weight_0_keeps_a_turn_as_context_through_prepare(tmp_path: Path) -> None:
    """OpenAI fine-tuning's per-message weight: read, kept by masking and cleaning, written and read back."""
    from kefu.config import PIIConfig
    from kefu.data.prepare import mask_pii

    (conv,), problems = read_all(jsonl(tmp_path / "o.jsonl", [_weighted(0)]))
    assert problems == []
    assert [t.weight for t in conv.turns] == [1, 1, 1, 0]
    convs = [conv]
    mask_pii(convs, [], PIIConfig())
    kept = Cleaner(CleanConfig()).keep(convs[0])
    assert kept is not None and [t.weight for t in kept.turns] == [1, 1, 1, 0]
    line = json.dumps(kept.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    assert [t.weight for t in Conversation.model_validate_json(line).turns] == [1, 1, 1, 0]


def test_a_weight_other_than_0_or_1_or_off_the_assistant_is_named(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "w.jsonl", [_weighted(1), _weighted(0.5), _weighted(True), _weighted(0, at=1)])
    items, problems = read_all(path)
    assert len(items) == 1 and items[0].turns[-1].weight == 1
    assert problems == [
        f"{path}:2: messages[4].weight: wrong value: expected 0 (not learned) or 1 (learned), got 0.5",
        f"{path}:3: messages[4].weight: wrong value: expected 0 (not learned) or 1 (learned), got True",
        f"{path}:4: messages[1].weight: a weight is only meaningful on assistant messages, not on a 'user' message",
    ]
