"""OpenAI tool calling through /v1/chat/completions with the real `openai` SDK against a running server (scripted
engine): the client's tools reach the model, its calls come back as tool_calls (streamed as OpenAI deltas), tool
results go back into the prompt, tool_choice and parallel_tool_calls are honoured, bad tool turns are 400s."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from sqlalchemy import select
from tests.serve.conftest import Server

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.serve.tables import AuditEvent

PARAMS = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_order", "description": "查询订单状态", "parameters": PARAMS}},
    {"type": "function", "function": {"name": "get_coupon", "description": "查询优惠券", "parameters": {}}},
]
ASK = [{"role": "user", "content": "我的订单 DD20260101 到哪了"}]
CALL = '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "DD20260101"}}\n</tool_call>'
RESULT = '{"status": "shipped", "latest": "已到达上海转运中心"}'


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base, api_key=server.key("client"), max_retries=0)


def test_the_models_call_comes_back_as_tool_calls(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue(CALL)
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_order" and json.loads(call.function.arguments) == {"order_id": "DD20260101"}
    sent = engine.calls[-1]
    assert [t["function"]["name"] for t in sent.params.tools or []] == ["get_order", "get_coupon"]
    assert sent.messages[-1] == ASK[0] and sent.messages[0]["role"] == "system"


def test_tool_results_go_back_into_the_prompt(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您的订单已到达上海转运中心。")
    history: Any = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_order", "arguments": '{"order_id": "DD20260101"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
    ]  # fmt: skip
    r = client.chat.completions.create(model="kefu", messages=history, tools=TOOLS)
    assert r.choices[0].message.content == "您的订单已到达上海转运中心。" and r.choices[0].finish_reason == "stop"
    sent = engine.calls[-1].messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "get_order", "arguments": {"order_id": "DD20260101"}}
    assert sent[3] == {"role": "tool", "content": RESULT, "tool_call_id": "call_1"}


def test_streamed_calls_are_openai_deltas_name_first(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    second = CALL.replace("DD20260101", "DD20260102")
    engine.queue(Reply.text("我查一下。\n" + CALL + "\n" + second))  # one character a chunk: markers split
    chunks = list(client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "我查一下。\n"
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    assert [(tc.index, tc.function.name if tc.function else None) for tc in calls] == [
        (0, "get_order"), (0, None), (1, "get_order"), (1, None)]  # fmt: skip
    assert calls[0].id and calls[0].function and calls[0].function.arguments == "" and calls[0].type == "function"
    assert [json.loads(tc.function.arguments) for tc in calls[1::2] if tc.function] == [
        {"order_id": "DD20260101"}, {"order_id": "DD20260102"}]  # fmt: skip
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and all(f is None for f in finishes[:-1])


def test_parallel_tool_calls_false_keeps_the_first(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue(CALL + "\n" + CALL.replace("DD20260101", "DD20260102"))
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, parallel_tool_calls=False)
    assert len(r.choices[0].message.tool_calls or []) == 1


def test_tool_choice_none_and_named(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("好的", Reply.text('{"order_id": "DD1"}}\n</tool_call>'))  # named: continues the forced start
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, tool_choice="none")
    assert engine.calls[-1].params.tools is None and r.choices[0].message.tool_calls is None
    named: Any = {"type": "function", "function": {"name": "get_order"}}
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, tool_choice=named)
    assert [t["function"]["name"] for t in engine.calls[-1].params.tools or []] == ["get_order"]
    assert r.choices[0].finish_reason == "tool_calls"


def test_llama3_json_calls(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.tool_calls_as = "llama3"
    engine.queue(Reply.text('{"name": "get_order", "parameters": {"order_id": "DD20260101"}}'))
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS)
    (call,) = r.choices[0].message.tool_calls or []
    assert call.function.name == "get_order" and r.choices[0].message.content is None


def test_malformed_call_output_is_text_not_a_call(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("<tool_call>\n{not json}\n</tool_call>")
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS)
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("messages", "extra", "problem"),
    [
        ([*ASK, {"role": "tool", "tool_call_id": "x", "content": "r"}], {},
         "messages[1]: a tool message must follow an assistant message with tool_calls"),
        ([*ASK, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
          "function": {"name": "get_order", "arguments": "{oops"}}]}, {"role": "tool", "tool_call_id": "c",
          "content": "r"}], {}, "messages[1].tool_calls[0].function.arguments: not valid JSON"),
        ([*ASK, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
          "function": {"name": "get_order", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "d",
          "content": "r"}], {}, "messages[2].tool_call_id: 'd' answers no call"),
    ],
)  # fmt: skip
def test_bad_tool_turns_are_400(client: openai.OpenAI, messages: Any, extra: Any, problem: str) -> None:
    with pytest.raises(openai.BadRequestError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        client.chat.completions.create(model="kefu", messages=messages, tools=TOOLS, **extra)


def test_tool_choice_must_name_an_offered_tool(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(openai.UnprocessableEntityError, match="'nope', which is not in tools"):  # schema errors: 422
        client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, tool_choice=named)
    with pytest.raises(openai.UnprocessableEntityError, match="only allowed when tools are specified"):
        client.chat.completions.create(model="kefu", messages=ASK, tool_choice="required")


def test_an_engine_that_cannot_call_tools_says_so(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.tool_calls_as = None
    with pytest.raises(openai.BadRequestError, match="set tool_calls_as to script tool calls"):
        client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS)
    engine.queue("您好")  # without tools the same engine answers as before
    assert client.chat.completions.create(model="kefu", messages=ASK).choices[0].message.content == "您好"


def test_the_audit_row_records_the_calls(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue(CALL)
    client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS)
    with server.svc.store.session() as s:  # written before the client hears the answer is complete
        row = s.scalars(select(AuditEvent).where(AuditEvent.action == "answer")).one()
        payload = json.loads(row.payload)
    assert payload["tool_calls"] == [{"name": "get_order", "arguments": {"order_id": "DD20260101"}}]
    assert payload["finish_reason"] == "tool_calls" and payload["cached"] is False


def test_tool_results_and_call_arguments_reach_the_model_pii_masked(
    engine: ScriptedEngine, client: openai.OpenAI
) -> None:
    engine.queue("好的")
    phone = "13812345678"
    history: Any = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_order", "arguments": json.dumps({"order_id": "DD20260101", "phone": phone})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": f'{{"receiver_phone": "{phone}"}}'},
    ]  # fmt: skip
    client.chat.completions.create(model="kefu", messages=history, tools=TOOLS)
    sent = json.dumps(engine.calls[-1].messages, ensure_ascii=False)
    assert phone not in sent and "DD20260101" in sent  # order numbers stay, personal data does not


def test_a_clients_tools_take_over_from_the_shops_own_actions(tmp_path: Any) -> None:
    from tests.actions.conftest import actions_cfg
    from tests.serve.conftest import start

    from kefu.serve.app import create_app

    engine = ScriptedEngine()
    engine.queue(CALL)
    server = start(create_app(actions_cfg(tmp_path, "http://127.0.0.1:9"), engine))  # no backend listens there
    ask = [{"role": "user", "content": "我的订单 DD2026010100001 到哪了"}]  # names the shop's tracking action
    try:
        client = openai.OpenAI(base_url=server.base, api_key=server.key(), max_retries=0)
        own = client.chat.completions.create(model="kefu", messages=ask, user="C1001")  # type: ignore[arg-type]
        assert "订单系统暂时查询不到" in (own.choices[0].message.content or "")  # the shop's action ran (and failed)
        r = client.chat.completions.create(model="kefu", messages=ask, tools=TOOLS, user="C1001")  # type: ignore[arg-type]
        assert r.choices[0].finish_reason == "tool_calls" and len(engine.calls) == 1
        assert "# Tools" not in engine.calls[-1].messages[0]["content"]  # only the client's tools, via the template
    finally:
        server.stop()


def test_required_and_named_tool_choice_make_the_answer_a_call(engine: ScriptedEngine, client: openai.OpenAI) -> None:
    # The engine continues from the forced start of a call: the scripted model writes only the rest.
    engine.queue(Reply.text('get_coupon", "arguments": {}}\n</tool_call>'), Reply.text('{"order_id": "DD1"}}'))
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, tool_choice="required")
    assert engine.calls[-1].params.prefix == '<tool_call>\n{"name": "'
    assert [c.function.name for c in r.choices[0].message.tool_calls or []] == ["get_coupon"]
    named: Any = {"type": "function", "function": {"name": "get_order"}}
    r = client.chat.completions.create(model="kefu", messages=ASK, tools=TOOLS, tool_choice=named, stream=True)
    calls = [tc for c in r if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert engine.calls[-1].params.prefix == '<tool_call>\n{"name": "get_order", "arguments": '
    assert calls[0].function and calls[0].function.name == "get_order"
    assert calls[1].function and json.loads(calls[1].function.arguments or "") == {"order_id": "DD1"}
