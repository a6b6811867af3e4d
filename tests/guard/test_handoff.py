"""Handoff: which customer messages go to a human, and which answers hand them over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.config import GuardConfig
from kefu.guard.handoff import is_handoff_answer, needs_handoff

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "src/kefu/samples/shop"
KEYWORDS = GuardConfig().handoff_keywords


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("转人工", "explicit_request"),
        ("别让机器人回答了，给我找个活人", "explicit_request"),
        ("I want to speak to a manager", "explicit_request"),
        ("Can I talk to a human?", "explicit_request"),
        ("我要投诉你们", "complaint"),
        ("再不处理我就打12315", "complaint"),
        ("I'm going to report your shop", "complaint"),
        ("我要找律师起诉你们", "legal"),
        ("My lawyer will contact you", "legal"),
        ("我要求三倍赔偿", "compensation_demand"),
        ("这都第三次发错货了", "repeated_failure"),
        ("说了多少遍了，地址错了", "repeated_failure"),
        ("说好三个工作日到账，现在还没收到", "repeated_failure"),
        ("This is the third time I'm asking", "repeated_failure"),
        ("你们太差了，气死我了", "anger"),
        ("垃圾客服！！", "anger"),
        ("帮我接人工", "explicit_request"),
        ("找你们店长出来说话", "explicit_request"),
        ("我不想和机器人聊了，叫你们的客服过来", "explicit_request"),
        ("Can someone from your team phone me back today?", "explicit_request"),
        ("agent please", "explicit_request"),
        ("I'll be leaving a one-star review everywhere unless this is fixed", "complaint"),
        ("I'm contacting a solicitor about this", "legal"),
        ("退款被驳回了，我不接受，要求重新处理", "refund_dispute"),
        ("I was charged twice and I want the second charge refunded", "refund_dispute"),
        ("快递弄丢了我的包裹，你们要全额赔偿", "compensation_demand"),
        ("充电宝充电的时候冒烟了，差点着火", "safety"),
        ("The heater gave me an electric shock", "safety"),
        ("有人冒充你们客服给我打电话，骗走了我两千块", "account_security"),
        ("Someone hacked my account and placed orders", "account_security"),
        ("上次客服说三天内给我回复，到现在都没消息", "repeated_failure"),
        ("You promised a callback yesterday and nobody called", "repeated_failure"),
        ("你们是不是骗子？钱付了东西不发", "anger"),
        ("I'm furious, the package arrived smashed", "anger"),
        ("厨房里一股燃气味，卡式炉好像漏气了", "safety"),  # a hazard with nobody hurt yet
        ("收到的移动电源鼓包了", "safety"),  # arrived that way, but the thing itself is the hazard
        ("The stove arrived and caught fire the first time I lit it", "safety"),
        ("找个人来处理一下", "explicit_request"),
        ("Just get me someone who knows what they're doing", "explicit_request"),
        # a clock time in a complaint is not a question about the service hours
        ("I called at 3pm and nobody answered, can I talk to a manager?", "explicit_request"),
        ("下午三点了还没人工回复我吗？", "keyword"),
    ],
)
def test_messages_that_need_a_human(text: str, reason: str) -> None:
    decision = needs_handoff(text, KEYWORDS)
    assert decision and decision.handoff and reason in decision.reasons and decision.matched


@pytest.mark.parametrize(
    "text",
    [
        "你是人工智能吗",  # 人工 inside 人工智能
        "不用转人工了，谢谢",
        "人工客服晚上几点下班？",  # a question about the service, answered by the bot
        "Are you a real person or a bot?",
        "你是真人吗",  # asks who answers (an identity question), not for a person
        "What time can I chat with a human agent?",
        "How do I return this?",
        "质量太差了",  # one anger word alone is not enough
        "我的快递到哪了",
        "投诉入口在哪里看",  # where to complain, not a complaint
        "这款人工草坪一平米多少钱",  # 人工 inside a product name
        "这个烟雾报警器能装在厨房吗",  # 报警 inside 报警器
        "这个加湿器会不会漏电，安全吗",  # a risk asked about before buying is not an incident
        "Is this snack suitable for people with nut allergies?",
        "Do you sell a police costume for kids?",
        "My manager wants to order 50 units for the office",
        "No need to transfer me to an agent, I just want the tracking link",
        "The last complaint I made was handled well, thanks again",  # a resolved complaint
        "The robot vacuum is ridiculous value, is it still on sale?",
        "国庆节还有人工客服吗",  # whether people are there at a time: the hours answer it
        "Is there a live agent at 10pm?",
        "客服热线号码是多少",
        "炉头收到就裂了一条缝，怎么换",  # arrived broken, nobody hurt: the damage policy answers it
        "背包被老鼠咬了个洞，保修管吗",
        "The tent pole arrived snapped in two",
    ],
)
def test_messages_the_assistant_keeps(text: str) -> None:
    decision = needs_handoff(text, KEYWORDS)
    assert not decision and decision.reasons == ()


def test_configured_keywords_and_width_insensitivity() -> None:
    assert needs_handoff("ＨＵＭＡＮ ＡＧＥＮＴ please", ["human agent"]).reasons == ("explicit_request", "keyword")
    assert needs_handoff("找老板娘", ["老板娘"]).reasons == ("keyword",)
    assert not needs_handoff("找老板娘", [])


def test_repeating_the_same_question_hands_off() -> None:
    history = ["我的快递到哪了？", "请问我的快递到哪了"]
    assert needs_handoff("我的快递到哪了", KEYWORDS, history=history).reasons == ("repeated_question",)
    assert not needs_handoff("我的快递到哪了", KEYWORDS, history=history[:1])
    assert not needs_handoff("发票怎么开", KEYWORDS, history=history)


def test_guard_config_can_be_passed_whole() -> None:
    cfg = GuardConfig(handoff_keywords=["老板娘"], handoff_repeats=2)
    assert needs_handoff("找老板娘", cfg).reasons == ("keyword",)
    assert needs_handoff("发票怎么开", cfg, history=["发票怎么开？"]).reasons == ("repeated_question",)


@pytest.mark.parametrize(
    "answer",
    [
        "您好，好的，马上为您转接人工客服。",
        "非常抱歉，我已为您转接人工客服登记投诉，专人会在24小时内回复您。",
        "这个问题需要人工审核，我为您转接人工客服，请准备好订单号。",
        "请回复“转人工”，由人工客服为您处理。",
        "售后专员会在24小时内联系您。",
        "I'm transferring you to a human agent now.",
        "I'm passing this to a human agent right away.",
        "A colleague will contact you within 24 hours.",
        "Let me connect you with our support team.",
    ],
)
def test_answers_that_hand_off(answer: str) -> None:
    assert is_handoff_answer(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "如需人工客服，回复“转人工”即可。",
        "在线人工客服每天9:00-22:00服务，需要人工时回复“转人工”即可。",
        "我可以帮您解答退换货问题，也可以为您转接人工客服。",
        "需要为您转接人工客服吗？",
        "您不需要转人工，我可以直接帮您查询。",
        "Human agents are available every day 9:00-22:00. Reply 转人工 to reach one.",
        "I can pass your request to a human agent who will review it.",
        "If you'd like a human agent, reply 转人工.",
        "退货请在7天内申请。",
    ],
)
def test_answers_that_do_not_hand_off(answer: str) -> None:
    assert not is_handoff_answer(answer)


def test_sample_shop_references_agree_with_needs_handoff() -> None:
    cases = [json.loads(line) for line in (SHOP / "data/eval_cases.jsonl").read_text(encoding="utf-8").splitlines()]
    wrong = [c["id"] for c in cases if is_handoff_answer(c["reference"]) != c["needs_handoff"]]
    assert wrong == []


def test_short_acknowledgements_repeated_do_not_hand_off() -> None:
    assert not needs_handoff("好的", KEYWORDS, history=["好的", "好的"])
    assert not needs_handoff("ok thanks", KEYWORDS, history=["ok thanks", "ok thanks"])
    history = ["Where is my parcel?", "where is my parcel"]
    assert needs_handoff("WHERE IS MY PARCEL", KEYWORDS, history=history).reasons == ("repeated_question",)


def test_labelled_escalation_set_meets_the_target() -> None:
    """bench/data/escalation_labelled.jsonl (zh and en): precision >= 0.90 and recall >= 0.95, as issue 12 asks."""
    rows = [json.loads(line) for line in (ROOT / "bench/data/escalation_labelled.jsonl").open(encoding="utf-8")]
    assert len(rows) >= 200 and {r["lang"] for r in rows} == {"zh", "en"}
    predicted = [needs_handoff(r["text"], GuardConfig(), history=r.get("history", [])).handoff for r in rows]
    tp = sum(p and r["escalate"] for p, r in zip(predicted, rows, strict=True))
    assert tp / sum(predicted) >= 0.90 and tp / sum(r["escalate"] for r in rows) >= 0.95
