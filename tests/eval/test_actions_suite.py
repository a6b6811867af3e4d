"""`kefu eval --suite actions`: the tasks, the judge, pass^k, and a run through the answer pipeline against the real
reference backend with a scripted engine; the sample shop's tool-use conversations never repeat an eval task."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.config import KefuConfig, load_config
from kefu.eval.actions.customer import LLMCustomer, ScriptedCustomer
from kefu.eval.actions.run import judge, pass_hat_k, run_actions_suite
from kefu.eval.actions.tasks import CONFIRM, DECLINE, EVAL_CUSTOMERS, GIVE_NUMBER, build_tasks
from kefu.eval.runner import Target
from kefu.shop.seed import seed
from tests.eval.conftest import SAMPLE, ScriptedServer

ROOT = SAMPLE.parents[3]
TOOL_CONVOS = SAMPLE / "data" / "sft_tools.jsonl"
ASKS_NUMBER = "您好，请告诉我您的订单号，我来帮您查询。"
KINDS = {"lookup_tracking", "lookup_status", "lookup_return", "policy_late_parcel", "ask_order_number",
         "refuse_other_customer", "write_confirmed", "write_declined", "write_refused"}  # fmt: skip


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> list:  # type: ignore[type-arg]
    return build_tasks(seed(tmp_path_factory.mktemp("shop") / "shop.sqlite"))


def _cfg() -> KefuConfig:
    return load_config(SAMPLE / "kefu.yaml", ["kb.sources=[]"])  # no knowledge base: nothing to ingest here


def test_tasks_are_many_deterministic_and_cover_every_type(tasks: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    assert len(tasks) >= 60 and {t.kind for t in tasks} == KINDS
    assert [t.id for t in build_tasks(seed(tmp_path / "again.sqlite"))] == [t.id for t in tasks]
    assert len({t.id for t in tasks}) == len(tasks)
    assert all(t.customer_id in EVAL_CUSTOMERS for t in tasks)
    writes = [t for t in tasks if t.kind == "write_confirmed"]
    assert {c[2] for t in writes for c in t.changes} == {"cancel", "address", "return"}


def test_pass_hat_k_is_taus_combinatorial_estimate() -> None:
    assert pass_hat_k([4, 2, 0], 4, 1) == pytest.approx((1 + 0.5 + 0) / 3)
    assert pass_hat_k([4, 3, 0], 4, 4) == pytest.approx(1 / 3)  # only the task that passed all 4
    assert pass_hat_k([5, 3], 5, 4) == pytest.approx((1 + 0) / 2)
    assert pass_hat_k([3], 6, 2) == pytest.approx(3 / 15)
    assert pass_hat_k([1], 1, 4) is None


def test_pipeline_passes_every_type_when_the_model_asks_for_the_number() -> None:
    engine = ScriptedEngine(default=Reply.text(ASKS_NUMBER))
    data = run_actions_suite(_cfg(), Target(engine=engine), trials=4, k=4, per_kind=2)
    by_type = data["summary"]["by_type"]
    assert set(by_type) == KINDS
    failed = [(t["task"], t["checks"]) for t in data["trials"] if not t["ok"]]
    assert not failed, failed[:3]
    assert data["summary"]["overall"]["pass^4"] == 1.0
    confirmed = [t for t in data["trials"] if t["kind"] == "write_confirmed"]
    assert all(len(t["changes"]) == 1 for t in confirmed)  # the backend's state changed, once
    declined = [t for t in data["trials"] if t["kind"] == "write_declined"]
    assert all(not t["changes"] and any(a["status"] == "declined" for a in t["actions"]) for t in declined)


def test_the_pipeline_asks_for_the_number_a_model_never_asks_for() -> None:
    engine = ScriptedEngine(default=Reply.text("您好，请在「我的订单」中查看物流。"))
    data = run_actions_suite(_cfg(), Target(engine=engine), trials=4, k=4, per_kind=10)
    asked = [t for t in data["trials"] if t["kind"] == "ask_order_number"]
    assert len(asked) == 40 and all(t["ok"] for t in asked), [t["turns"] for t in asked if not t["ok"]][:2]
    assert data["summary"]["by_type"]["ask_order_number"]["pass^4"] == 1.0
    assert not engine.calls  # every turn of every trial was the pipeline's: asked, then looked up


def test_judge_fails_a_conversation_that_never_told_the_event(tasks: list) -> None:  # type: ignore[type-arg]
    task = next(t for t in tasks if t.kind == "ask_order_number")
    checks = judge(task, "您好，请在「我的订单」中查看物流。", [], None)
    assert not checks["told"] and checks["state"]


def test_llm_user_simulator_speaks_through_an_openai_endpoint(tasks: list) -> None:  # type: ignore[type-arg]
    task = next(t for t in tasks if t.kind == "write_confirmed")
    with ScriptedServer(default="###STOP###") as server:
        server.answers["(the chat opens; write your first message)"] = task.opening[1]
        user = LLMCustomer(server.url, "sim")
        assert user.first(task, 0) == task.opening[1]
        assert user.reply(task, 0, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]) is None
        system = server.requests[0][0]
    assert system["role"] == "system" and task.order_id in system["content"]


def _user_texts() -> list[str]:
    records = [json.loads(line) for line in TOOL_CONVOS.read_text(encoding="utf-8").splitlines()]
    return [m["content"] for r in records for m in r["messages"] if m["role"] == "user"]


def _shape(text: str) -> str:
    return re.sub(r"DD\d{13}", "{oid}", text).strip().lower()


def test_tool_conversations_never_repeat_an_eval_task(tasks: list) -> None:  # type: ignore[type-arg]
    said = _user_texts()
    evals = {o for t in tasks for o in t.opening} | {g.format(oid=t.order_id) for t in tasks for g in GIVE_NUMBER[1]}
    evals |= {g.format(oid=t.order_id) for t in tasks for g in GIVE_NUMBER[0]}
    assert not set(said) & evals
    shapes = {_shape(s) for s in said}
    assert not shapes & {_shape(e) for e in evals}  # not even with another order number
    assert not shapes & {w.lower() for pair in (*CONFIRM, *DECLINE) for w in pair}
    eval_orders = {t.order_id for t in tasks}
    assert not {m for s in said for m in re.findall(r"DD\d{13}", s)} & eval_orders


def test_tool_conversations_cover_the_five_kinds_in_openai_format() -> None:
    records = [json.loads(line) for line in TOOL_CONVOS.read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 150
    names = {t["function"]["name"] for t in records[0]["tools"]}
    assert {"order_tracking", "cancel_order", "change_address", "open_return"} <= names
    flat = [json.dumps(r, ensure_ascii=False) for r in records]
    assert sum("72 小时" in f or "72 hours" in f for f in flat) >= 20  # lookup then policy
    asking = [r["messages"] for r in records if any(_asks_number(m) for m in r["messages"])]
    assert len(asking) >= 50 and sum(_asks_number(m[1]) for m in asking) >= 30  # most ask in the first turn
    assert sum(m[1].get("weight", 1) == 0 for m in asking) >= 15  # the others after small talk (not learned)
    assert sum("order number" in json.dumps(m) for m in asking) >= 15  # in English too
    results = [[json.loads(m["content"]) for m in r["messages"] if m["role"] == "tool"] for r in records]
    assert sum(any(x.get("error") == "not_found" for x in rs) for rs in results) >= 20  # another customer's order
    for r in records:
        msgs = r["messages"]
        for i, m in enumerate(msgs):
            for call in m.get("tool_calls") or []:
                assert msgs[i + 1]["role"] == "tool" and msgs[i + 1]["tool_call_id"] == call["id"]
                json.loads(call["function"]["arguments"])
                if call["function"]["name"] in {"cancel_order", "change_address", "open_return"}:
                    _check_write(msgs, i)
        # learned: the model's calls and its question for the order number; the pipeline's own words are not
        learned = [m for m in msgs if m["role"] == "assistant" and m.get("weight", 1)]
        assert learned and all(m.get("tool_calls") or "订单号" in m["content"] or "order number" in m["content"]
                                for m in learned)  # fmt: skip
        assert all(m.get("weight", 1) == 0 for m in msgs[msgs.index(learned[-1]) + 1 :] if m["role"] == "assistant")


def _asks_number(m: dict[str, Any]) -> bool:
    """The model's question for a missing order number, in serving's own words (kefu.answer.asking)."""
    said = (m["content"] or "") if m["role"] == "assistant" and m.get("weight", 1) else ""
    return "请提供一下您的订单号（DD 开头" in said or "send me your order number (DD followed by" in said


def _check_write(msgs: list[dict[str, Any]], i: int) -> None:
    """A write is the model's call, answered by serving's confirmation question (nothing runs); the write runs,
    by the pipeline (not learned), only after the customer's yes in a separate turn."""
    if i > 1 and msgs[i - 1]["role"] == "user" and msgs[i - 2]["role"] == "assistant":  # the confirmed run
        assert msgs[i]["weight"] == 0
        assert msgs[i - 2]["weight"] == 0 and ("确认" in msgs[i - 2]["content"] or "confirm" in msgs[i - 2]["content"])
        return
    assert msgs[i].get("weight", 1) == 1 and i == 1  # the model's own call, in answer to the customer's ask
    assert json.loads(msgs[i + 1]["content"]) == {"status": "awaiting_confirmation"}
    asked = msgs[i + 2]["content"]
    assert msgs[i + 2]["weight"] == 0 and ("确认" in asked or "confirm" in asked)


def test_sample_shop_declares_the_reference_actions() -> None:
    sample = load_config(SAMPLE / "kefu.yaml").actions
    reference = load_config(ROOT / "configs" / "shop-actions.yaml").actions
    assert sample.model_dump() == reference.model_dump()
    assert ScriptedCustomer().first  # the default customer of the suite
