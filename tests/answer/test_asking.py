"""Asking for a missing order number: the answer pipeline, the reference shop backend on a loopback port and a
scripted model that would only say something else. A customer who wants their own order looked up or changed but
gives no number is asked for it (in their language, saying what it looks like); the number they send next runs the
action against the backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kefu.answer.asking import number_hint, wants_own_order
from kefu.answer.confirm import Pending
from kefu.answer.engines.base import GenParams
from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.answer.pipeline import Answer, AnswerPipeline
from tests.actions.conftest import MODEL_REPLY, Shop, actions_cfg

WANTS = [
    "我的快递怎么还没到", "帮我查一下物流", "我买的东西到哪了", "快递到哪了啊", "我要取消订单", "我想退货",
    "说好三个工作日退款到账，现在都过去十天了还没收到钱。", "Where is my parcel?", "Can you check my delivery?",
    "My package hasn't arrived, where is it?", "I need a tracking update", "I want to cancel my order",
    "Can you tell me when my delivery arrives?",
]  # fmt: skip
# Questions for the knowledge base that name shipping, returns or an order (from the sample shop's data).
POLICY = [
    "退货运费是我出吗？", "你们平时发的是哪家快递？", "快递停在一个地方四天了一直不动，怎么办？",
    "包裹已经在路上了，还能改收货地址吗？", "为了帮我查订单，你需要我的登录验证码吗？", "那我想退掉，要怎么操作？",
    "退货已经寄回去了，退款多久能回到我的支付宝？",
    "How long does shipping to Tibet usually take?", "Do I pay for the return postage?",
    "What is the minimum order for free delivery?", "Can I still return it? I don't like the colour.",
]  # fmt: skip


def test_requests_about_ones_own_order_are_told_from_policy_questions() -> None:
    assert [q for q in WANTS if not wants_own_order(q)] == []
    assert [q for q in POLICY if wants_own_order(q)] == []


def test_the_number_is_described_only_when_its_pattern_says_it_plainly() -> None:
    assert number_hint("DD\\d{13}", "zh") == "DD 开头，后面 13 位数字"
    assert number_hint("^DD\\d{13}$", "en") == "DD followed by 13 digits"
    assert number_hint("\\d{8,12}", "en") == "8-12 digits"
    assert number_hint("[A-Z]{2}-\\d+", "zh") == number_hint(None, "en") == ""


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(default=Reply.text(MODEL_REPLY))


@pytest.fixture
def pipeline(tmp_path: Path, shop: Shop, engine: ScriptedEngine) -> AnswerPipeline:
    return AnswerPipeline(actions_cfg(tmp_path, shop.url), engine)


def chat(pipe: AnswerPipeline, said: list[str], customer: str | None) -> list[Answer]:
    """A conversation's answers, the pending write carried from turn to turn as the gateway does."""
    turns: list[dict[str, str]] = []
    answers: list[Answer] = []
    pending: Pending | None = None
    for text in said:
        turns.append({"role": "user", "content": text})
        answers.append(asyncio.run(pipe.answer(turns, GenParams(), customer_id=customer, pending=pending)))
        turns.append({"role": "assistant", "content": answers[-1].text})
        pending = answers[-1].pending
    return answers


def test_asked_for_the_number_then_the_lookup_runs(
    pipeline: AnswerPipeline, shop: Shop, engine: ScriptedEngine
) -> None:
    order = shop.shipped_order("C1001")
    when, event = shop.latest_event(order)
    asked, told = chat(pipeline, ["我的快递怎么还没到", f"订单号是 {order}"], "C1001")
    assert asked.text == "您好，请提供一下您的订单号（DD 开头，后面 13 位数字），我马上为您查询。"
    assert (asked.action, asked.actions) == ("act", [])  # nothing looked up yet
    assert order in told.text and when in told.text and event in told.text, told.text
    assert told.actions[0]["name"] == "order_tracking" and told.actions[0]["status"] == "ok"
    assert not engine.calls  # the model was never asked to guess


def test_asked_in_english_after_small_talk(pipeline: AnswerPipeline, shop: Shop) -> None:
    order = shop.shipped_order("C1004")
    hello, asked, told = chat(pipeline, ["Hi there", "Where is my parcel?", order], "C1004")
    assert hello.text == MODEL_REPLY
    assert (
        asked.text
        == "Hello, could you send me your order number (DD followed by 13 digits)? I'll look it up right away."
    )
    assert told.text.startswith("Hello") and order in told.text and "Latest update" in told.text


def test_a_write_without_its_number_asks_then_asks_to_confirm(pipeline: AnswerPipeline, shop: Shop) -> None:
    order = shop.shipped_order("C1001")
    asked, confirm = chat(pipeline, ["我要取消订单", order], "C1001")
    assert "订单号" in asked.text and asked.text.endswith("我马上为您办理。")
    assert "确认" in confirm.text and order in confirm.text  # the write is asked about; nothing runs yet
    assert [(a["name"], a["status"]) for a in confirm.actions] == [("cancel_order", "awaiting_confirmation")]


@pytest.mark.parametrize(
    ("said", "customer"),
    [
        (["退货运费是我出吗？"], "C1001"),  # a policy question: the knowledge base and the model answer it
        (["我的快递怎么还没到"], None),  # nobody signed in: nothing could be looked up
        (["订单 DD2026120100006 是什么时候下的单？", "那快递到哪了"], "C1001"),  # the number is in the conversation
    ],
)
def test_no_question_when_the_number_is_not_missing_or_not_wanted(
    pipeline: AnswerPipeline, said: list[str], customer: str | None
) -> None:
    assert chat(pipeline, said, customer)[-1].text == MODEL_REPLY
