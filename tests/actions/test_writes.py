"""Write actions end to end: the openai client -> kefu gateway (server-side session) -> the reference shop backend.

A write runs only when the customer confirms in a separate turn of the same conversation; it changes the backend's
state and leaves an audit row; anything else cancels it; another customer's order is refused before anything is
asked.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import openai

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve.app import create_app
from tests.actions.conftest import Shop, actions_cfg
from tests.actions.test_e2e import answer_events
from tests.serve.conftest import Server, start


def say(gw: Server, conversation: str, text: str, customer: str) -> str:
    """One customer message in a server-side conversation (one API key per gateway: conversations belong to keys)."""
    client = getattr(gw, "client", None)
    if client is None:
        client = gw.client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)  # type: ignore[attr-defined]
    extra = {"kefu": {"user_id": customer, "conversation_id": conversation}}
    r = client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": text}], extra_body=extra)
    return r.choices[0].message.content or ""


def order_row(shop: Shop, order: str) -> tuple[str, str]:
    con = sqlite3.connect(shop.db)
    row = con.execute("SELECT status, address FROM orders WHERE id = ?", (order,)).fetchone()
    con.close()
    return row


def changes(shop: Shop) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(shop.db)
    rows = con.execute("SELECT customer_id, order_id, kind FROM changes ORDER BY seq").fetchall()
    con.close()
    return rows


def paid_order(shop: Shop, customer: str) -> str:
    con = sqlite3.connect(shop.db)
    row = con.execute("SELECT id FROM orders WHERE customer_id = ? AND status = 'paid' ORDER BY id LIMIT 1",
                      (customer,)).fetchone()  # fmt: skip
    con.close()
    return str(row[0])


def test_confirmed_cancel_runs_once_and_is_audited(gateway: Server, shop: Shop, engine: ScriptedEngine) -> None:
    order = paid_order(shop, "C1003")
    asked = say(gateway, "conv-a", f"请帮我取消订单 {order}", "C1003")
    assert "确认" in asked and order in asked and order_row(shop, order)[0] == "paid"  # asked, not done
    done = say(gateway, "conv-a", "确认", "C1003")
    assert "已为您取消订单" in done and order_row(shop, order)[0] == "cancelled"
    assert changes(shop) == [("C1003", order, "cancel")]
    again = say(gateway, "conv-a", "确认", "C1003")  # the pending write was used up: nothing runs twice
    assert changes(shop) == [("C1003", order, "cancel")] and "已为您取消" not in again
    first, second, _ = answer_events(gateway)
    assert first["actions"][0]["status"] == "awaiting_confirmation"
    [run] = second["actions"]
    assert (run["name"], run["status"], run["confirmed"], run["http_status"]) == ("cancel_order", "ok", True, 200)
    assert "C1003" not in json.dumps(second)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'kefu_actions_total{action="cancel_order",status="ok"} 1.0' in metrics
    assert not engine.calls[:-1]  # the model answered only the last, unconfirmable "确认"


def test_anything_but_yes_cancels_the_write(gateway: Server, shop: Shop) -> None:
    order = paid_order(shop, "C1003")
    say(gateway, "conv-b", f"Please cancel order {order}", "C1003")
    reply = say(gateway, "conv-b", "hmm, not sure", "C1003")
    assert reply.startswith("Hello") and "did not cancel order" in reply
    assert say(gateway, "conv-b", "yes", "C1003") != ""  # too late: the write was dropped with the last message
    assert order_row(shop, order)[0] == "paid" and changes(shop) == []
    statuses = [e["actions"][0]["status"] for e in answer_events(gateway) if e["actions"]]
    assert statuses == ["awaiting_confirmation", "declined"]


def test_confirmation_from_another_customer_or_conversation_runs_nothing(gateway: Server, shop: Shop) -> None:
    order = paid_order(shop, "C1003")
    say(gateway, "conv-c", f"请帮我取消订单 {order}", "C1003")
    say(gateway, "conv-other", "确认", "C1003")  # another conversation has nothing pending
    say(gateway, "conv-c", "确认", "C1004")  # the same conversation, but not the customer who asked
    assert order_row(shop, order)[0] == "paid" and changes(shop) == []


def test_other_customers_order_is_refused_before_asking(gateway: Server, shop: Shop) -> None:
    order = paid_order(shop, "C1003")
    reply = say(gateway, "conv-d", f"请帮我取消订单 {order}", "C1001")
    assert "没有在您的账户下找到" in reply and "确认" not in reply
    say(gateway, "conv-d", "确认", "C1001")
    assert order_row(shop, order)[0] == "paid" and changes(shop) == []
    first = answer_events(gateway)[0]["actions"]
    assert [(a["name"], a["status"]) for a in first] == [("cancel_order", "not_found")]


def test_address_change_and_shop_rule_refusal(gateway: Server, shop: Shop) -> None:
    order = paid_order(shop, "C1003")
    asked = say(gateway, "conv-e", f"订单 {order} 改地址，改成 杭州市西湖区文三路100号", "C1003")
    assert "杭州市西湖区文三路100号" in asked and "确认" in asked
    done = say(gateway, "conv-e", "好的", "C1003")
    assert "已为您把订单" in done and order_row(shop, order)[1] == "杭州市西湖区文三路100号"
    shipped = shop.shipped_order("C1001")
    say(gateway, "conv-f", f"请帮我取消订单 {shipped}", "C1001")
    refused = say(gateway, "conv-f", "确认取消", "C1001")
    assert "无法办理" in refused and "已发货" in refused and order_row(shop, shipped)[0] != "cancelled"
    assert answer_events(gateway)[-1]["actions"][0]["status"] == "rejected"


def test_late_parcel_goes_to_a_human(gateway: Server, shop: Shop) -> None:
    con = sqlite3.connect(shop.db)
    late = con.execute("SELECT id, customer_id FROM orders WHERE id = 'DD2026112600007'").fetchone()
    con.close()
    reply = say(gateway, "conv-g", f"我的订单 {late[0]} 到哪了", late[1])
    assert "72 小时" in reply and "转接人工" in reply
    event = answer_events(gateway)[0]
    assert event["handoff"]["status"] == "escalated" and event["handoff"]["reason"] == "action:order_tracking"


def test_models_write_call_is_asked_first_then_run(tmp_path: Path, shop: Shop) -> None:
    order = paid_order(shop, "C1003")
    call = json.dumps({"name": "cancel_order", "arguments": {"order_id": order}})
    engine = ScriptedEngine()
    engine.queue(f"<tool_call>\n{call}\n</tool_call>")
    cfg = actions_cfg(tmp_path, shop.url)
    cfg.actions.model_calls = True
    gw = start(create_app(cfg, engine))
    try:
        asked = say(gw, "conv-m", f"{order} 这个我不要了", "C1003")  # no trigger word: the model decides
        assert "确认" in asked and "tool_call" not in asked and order_row(shop, order)[0] == "paid"
        done = say(gw, "conv-m", "确认", "C1003")
        assert "已为您取消订单" in done and changes(shop) == [("C1003", order, "cancel")]
        first, second = answer_events(gw)
        assert first["actions"][0]["source"] == "model" and first["actions"][0]["status"] == "awaiting_confirmation"
        assert second["actions"][0]["confirmed"] is True and len(engine.calls) == 1
    finally:
        gw.stop()


def test_moving_on_cancels_the_write_and_answers_the_new_question(gateway: Server, shop: Shop) -> None:
    order, other = paid_order(shop, "C1003"), shop.shipped_order("C1003")
    say(gateway, "conv-n", f"请帮我取消订单 {order}", "C1003")
    reply = say(gateway, "conv-n", f"订单 {other} 到哪了", "C1003")
    assert reply.startswith("您好，好的，没有为您取消订单") and reply.count("您好") == 1
    assert shop.latest_event(other)[1] in reply and changes(shop) == []


def test_models_address_change_gets_the_customers_own_address_back(tmp_path: Path, shop: Shop) -> None:
    """The model reads the conversation PII-masked, so its call says [ADDRESS]; the shop gets what was typed."""
    order = paid_order(shop, "C1003")
    call = json.dumps({"name": "change_address", "arguments": {"order_id": order, "address": "[ADDRESS]"}})
    engine = ScriptedEngine()
    engine.queue(f"<tool_call>\n{call}\n</tool_call>")
    cfg = actions_cfg(tmp_path, shop.url)
    cfg.actions.model_calls = True
    gw = start(create_app(cfg, engine))
    try:
        asked = say(gw, "conv-m", f"{order} 这单麻烦送到杭州市西湖区文三路100号", "C1003")  # no trigger: the model
        seen = engine.calls[0].messages[-1]["content"]
        assert "文三路" not in seen and "[ADDRESS]" in seen  # the model never saw the address
        # Asked to confirm (the reply passes the output guard like any model answer: the address shows masked).
        assert order in asked and "确认" in asked and order_row(shop, order)[0] == "paid"
        done = say(gw, "conv-m", "确认", "C1003")
        assert "已为您把订单" in done and order_row(shop, order)[1] == "杭州市西湖区文三路100号"
        audited = answer_events(gw)[0]["actions"][0]
        assert audited["source"] == "model" and "文三路" not in json.dumps(audited, ensure_ascii=False)
    finally:
        gw.stop()
