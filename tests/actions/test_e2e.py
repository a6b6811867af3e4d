"""End to end: the real `openai` client -> kefu gateway -> the reference shop backend over loopback HTTP."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.answer.toolcalls import ToolsUnsupported
from kefu.serve.app import create_app
from kefu.serve.tables import AuditEvent
from tests.actions.conftest import MODEL_REPLY, Shop, actions_cfg
from tests.serve.conftest import Server, free_port, start


def ask(gw: Server, text: str, customer: str | None) -> str:
    client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
    extra = {"kefu": {"user_id": customer}} if customer else None
    r = client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": text}], extra_body=extra)
    return r.choices[0].message.content or ""


def answer_events(gw: Server) -> list[dict]:
    gw.svc.audit.flush()
    with gw.svc.store.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "answer").order_by(AuditEvent.id)).all()
        return [json.loads(r.payload) for r in rows]


def test_tracking_answer_carries_backends_latest_event(gateway: Server, shop: Shop, engine: ScriptedEngine) -> None:
    order = shop.shipped_order("C1001")
    when, event = shop.latest_event(order)
    text = ask(gateway, f"我的订单 {order} 到哪了", "C1001")
    assert order in text and when in text and event in text, text
    assert not engine.calls  # answered from the backend, not generated
    [payload] = answer_events(gateway)
    [action] = payload["actions"]
    assert (action["name"], action["status"], action["http_status"]) == ("order_tracking", "ok", 200)
    assert action["arguments"] == {"order_id": order} and "C1001" not in json.dumps(payload)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'kefu_actions_total{action="order_tracking",status="ok"} 1.0' in metrics


def test_other_customers_order_is_not_disclosed(gateway: Server, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    when, event = shop.latest_event(order)
    text = ask(gateway, f"我的订单 {order} 到哪了", "C1002")
    assert "没有在您的账户下找到" in text and event not in text and when not in text
    assert "SF" not in text and "ZT" not in text and "YT" not in text  # no carrier's tracking number either
    [payload] = answer_events(gateway)
    assert payload["actions"][0]["status"] == "not_found" and payload["actions"][0]["fields"] == []


def test_no_customer_id_looks_nothing_up(gateway: Server, shop: Shop) -> None:
    text = ask(gateway, f"我的订单 {shop.shipped_order('C1001')} 到哪了", None)
    assert "登录" in text
    assert answer_events(gateway)[0]["actions"][0]["status"] == "no_customer"


def test_english_question_gets_english_tracking(gateway: Server, shop: Shop) -> None:
    order = shop.shipped_order("C1004")
    text = ask(gateway, f"Where is my order {order}?", "C1004")
    assert text.startswith("Hello") and order in text and "Latest update" in text


def test_question_without_order_number_is_asked_for_it(gateway: Server, shop: Shop, engine: ScriptedEngine) -> None:
    assert "请提供一下您的订单号（DD 开头" in ask(gateway, "我的快递到哪了", "C1001")
    assert ask(gateway, "我的快递到哪了", None) == MODEL_REPLY  # nobody signed in: nothing to look up
    assert ask(gateway, "退货运费是我出吗？", "C1001") == MODEL_REPLY  # a policy question, not a lookup
    assert len(engine.calls) == 2


def test_the_number_sent_after_the_question_runs_the_lookup(gateway: Server, shop: Shop) -> None:
    order = shop.shipped_order("C1004")
    client = openai.OpenAI(base_url=gateway.base, api_key=gateway.key(), max_retries=0)
    extra = {"kefu": {"user_id": "C1004", "conversation_id": "conv-ask"}}
    said = []
    for text in ("Where is my parcel?", order):  # the gateway keeps the conversation: each request sends one turn
        msg = [{"role": "user", "content": text}]
        r = client.chat.completions.create(model="kefu", messages=msg, extra_body=extra)  # type: ignore[arg-type]
        said.append(r.choices[0].message.content or "")
    assert "could you send me your order number (DD followed by 13 digits)" in said[0]
    assert order in said[1] and shop.latest_event(order)[0] in said[1] and "Latest update" in said[1], said
    assert [a["name"] for e in answer_events(gateway) for a in e["actions"]] == ["order_tracking"]


def test_backend_down_is_a_polite_answer(tmp_path: Path, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gw = start(create_app(actions_cfg(tmp_path, dead), ScriptedEngine()))
    try:
        text = ask(gw, f"我的订单 {order} 到哪了", "C1001")
        assert "暂时查询不到" in text and "人工" in text
        [action] = answer_events(gw)[0]["actions"]
        assert action["status"] == "unavailable" and action["error"]
    finally:
        gw.stop()


def test_wrong_credential_is_unavailable_not_an_error(
    gateway: Server, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEFU_SHOP_AUTH", "Bearer wrong")
    text = ask(gateway, f"我的订单 {shop.shipped_order('C1001')} 到哪了", "C1001")
    assert "暂时查询不到" in text
    assert answer_events(gateway)[0]["actions"][0]["http_status"] == 401


def test_streamed_answer_is_the_same(gateway: Server, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    client = openai.OpenAI(base_url=gateway.base, api_key=gateway.key(), max_retries=0)
    stream = client.chat.completions.create(
        model="kefu", messages=[{"role": "user", "content": f"{order} 物流怎么样了"}], stream=True, user="C1001"
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert shop.latest_event(order)[1] in text  # the OpenAI `user` field also names the customer


def _model_gateway(tmp_path: Path, shop: Shop, engine: ScriptedEngine) -> Server:
    cfg = actions_cfg(tmp_path, shop.url)
    cfg.actions.model_calls = True
    return start(create_app(cfg, engine))


def test_models_tool_call_runs_the_action(tmp_path: Path, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    call = json.dumps({"name": "order_tracking", "arguments": {"order_id": order}})
    engine = ScriptedEngine()
    engine.queue(f"<tool_call>\n{call}\n</tool_call>", f"<tool_call>\n{call}\n</tool_call>")
    gw = _model_gateway(tmp_path, shop, engine)
    try:
        text = ask(gw, f"帮我看一下 {order}", "C1001")  # no trigger word: the model decides
        assert shop.latest_event(order)[1] in text and "tool_call" not in text
        offered = [t["function"]["name"] for t in engine.calls[0].params.tools or []]  # rendered by the template
        assert "order_tracking" in offered and "order_tracking" not in engine.calls[0].messages[0]["content"]
        stolen = ask(gw, f"帮我看一下 {order}", "C1002")  # the model's call is scoped to the asking customer too
        assert "没有在您的账户下找到" in stolen and shop.latest_event(order)[1] not in stolen
        first, second = answer_events(gw)
        assert first["actions"][0]["source"] == "model" and first["actions"][0]["status"] == "ok"
        assert second["actions"][0]["status"] == "not_found"
    finally:
        gw.stop()


def test_a_bare_call_after_junk_runs_the_action_and_is_never_shown(tmp_path: Path, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    engine = ScriptedEngine()  # what the trained default wrote: junk for <tool_call>, then the call's JSON
    engine.queue("-offsetof" + json.dumps({"name": "order_tracking", "arguments": {"order_id": order}}))
    gw = _model_gateway(tmp_path, shop, engine)
    try:
        text = ask(gw, f"帮我看一下 {order}", "C1001")
        assert shop.latest_event(order)[1] in text
        assert "offsetof" not in text and '"name"' not in text and "order_tracking" not in text
        assert answer_events(gw)[0]["actions"][0]["source"] == "model"
    finally:
        gw.stop()


def test_a_model_that_cannot_render_tools_is_refused_at_start(tmp_path: Path, shop: Shop) -> None:
    cfg = actions_cfg(tmp_path, shop.url)
    cfg.actions.model_calls = True
    app = create_app(cfg, ScriptedEngine(tool_calls_as=None))
    with pytest.raises(ToolsUnsupported, match="tool_calls_as"), TestClient(app):
        pass  # the lifespan runs on entering: startup fails before any customer is served


def test_ordinary_model_answers_pass_through(tmp_path: Path, shop: Shop, engine: ScriptedEngine) -> None:
    gw = _model_gateway(tmp_path, shop, engine)
    try:
        assert ask(gw, "你们几点下班", "C1001") == MODEL_REPLY
        assert answer_events(gw)[0]["actions"] == []
    finally:
        gw.stop()


def test_backend_timeout_is_a_polite_answer(tmp_path: Path, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cfg = actions_cfg(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}")
        next(t for t in cfg.actions.tools if t.name == "order_tracking").timeout_s = 0.3
        gw = start(create_app(cfg, ScriptedEngine()))
        try:
            text = ask(gw, f"我的订单 {order} 到哪了", "C1001")
            [action] = answer_events(gw)[0]["actions"]
        finally:
            gw.stop()
    assert "暂时查询不到" in text
    assert action["status"] == "unavailable" and "Timeout" in action["error"] and action["latency_ms"] < 3000


def test_backend_500_is_a_polite_answer(gateway: Server, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    con = sqlite3.connect(shop.db)
    con.execute("DROP TABLE tracking_events")  # the backend's query now fails: FastAPI answers 500
    con.commit()
    con.close()
    text = ask(gateway, f"我的订单 {order} 到哪了", "C1001")
    assert "暂时查询不到" in text and "Traceback" not in text
    assert answer_events(gateway)[0]["actions"][0]["http_status"] == 500
