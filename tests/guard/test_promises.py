"""Over-promises and policy limits: positives per rule, negated phrasings, the sample shop's references as negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.errors import KefuError
from kefu.guard.promises import LIMIT_RULES, PROMISE_RULES, check_limits, find_promises, parse_number

SHOP = Path(__file__).resolve().parents[2] / "src/kefu/samples/shop"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("明天一定到，您放心", "zh.guarantee_delivery"),
        ("我们保证明天送到", "zh.guarantee_delivery"),
        ("保证明天", "zh.guarantee_delivery"),
        ("24小时内一定发货", "zh.guarantee_delivery"),
        ("我保证给您全额退款", "zh.guarantee_outcome"),
        ("这口锅绝对不会坏", "zh.guarantee_outcome"),
        ("保证十年不坏", "zh.guarantee_outcome"),
        ("明天就能送到", "zh.date_promise"),
        ("再送您一张优惠券作为补偿", "zh.compensation"),
        ("给您补一张50元无门槛的", "zh.compensation"),
        ("我们会赔偿您的损失", "zh.compensation"),
        ("全额退款再额外送红包", "zh.extra_refund"),
        ("这单给您免单", "zh.extra_refund"),
        ("退一赔三", "zh.extra_refund"),
        ("这次给您破例", "zh.exception"),
        ("我们可以特殊处理一下", "zh.exception"),
        ("超过7天也可以退", "zh.exception"),
        ("先给您退款，东西您慢慢寄", "zh.immediate_action"),
        ("已为您办理退款", "zh.done_claim"),
        ("在签收后 30 分钟内，您可以随意退换货。", "zh.unconditional"),
        ("所有东西都能随便退", "zh.unconditional"),
        ("不喜欢就想退就退", "zh.unconditional"),
        ("You can return it anytime.", "en.unconditional"),
        ("We offer unconditional refunds", "en.unconditional"),
        ("50元无门槛券已发放", "zh.done_claim"),
        ("I guarantee it will be there", "en.guarantee"),
        ("We will definitely refund you", "en.definitely"),
        ("I promise it's fine", "en.promise"),
        ("It will arrive tomorrow", "en.delivery_date"),
        ("You'll get a full refund plus a coupon", "en.compensation"),
        ("We'll give you a free voucher for the trouble", "en.compensation"),
        ("I'll make an exception for you", "en.exception"),
        ("I have refunded your order", "en.done_claim"),
    ],
)
def test_promises_are_found(text: str, rule: str) -> None:
    found = find_promises(text)
    assert rule in [f.rule for f in found]
    f = next(f for f in found if f.rule == rule)
    assert text[f.start : f.end] == f.text and f.text


@pytest.mark.parametrize(
    "text",
    [
        "我无法保证明天一定到",
        "很抱歉，我无法承诺具体送达日期",
        "不能保证具体到达时间",
        "我们不一定能明天送到",
        "您一定要在签收后7天内申请",  # advice to the customer, not a promise
        "给您一定的时间考虑",
        "额外补偿不在小禾的权限内",
        "如果明天到货请及时签收",
        "快递时效一般1-2天，发货后可在订单页查看物流",
        "核实后免费补发或退款",
        "7天无理由退货从签收次日起计算",
        "您可以随时联系我们",
        "抱歉，不能随便退哦",
        "Returns for any reason are accepted within 7 days.",
        "We cannot offer unconditional returns.",
        "I cannot guarantee a delivery date",
        "I can't promise that",
        "We are unable to offer a full refund plus a coupon",
        "It usually arrives tomorrow if shipped today",
        "Unfortunately I can't make an exception",
    ],
)
def test_negated_or_policy_phrasings_are_not_promises(text: str) -> None:
    assert find_promises(text) == []


def test_language_filter() -> None:
    text = "明天一定到. I promise"
    assert {f.rule.split(".")[0] for f in find_promises(text)} == {"zh", "en"}
    assert {f.rule for f in find_promises(text, lang="en")} == {"en.promise"}


def test_rules_are_data_and_unique() -> None:
    ids = [r.id for r in PROMISE_RULES]
    assert len(ids) == len(set(ids)) and all(r.lang in ("zh", "en") for r in PROMISE_RULES)


def test_sample_shop_reference_answers_do_not_overpromise() -> None:
    cases = [json.loads(line) for line in (SHOP / "data/eval_cases.jsonl").read_text(encoding="utf-8").splitlines()]
    limits = {"return_days": 7, "quality_return_days": 15, "price_protection_days": 15, "ship_hours": 48}
    flagged = {c["id"]: find_promises(c["reference"]) + check_limits(c["reference"], limits) for c in cases}
    assert {k: v for k, v in flagged.items() if v} == {}
    # ...while most of the over-promising phrases the cases list as contradictions are caught.
    overs = [p for c in cases if c["category"] == "overpromise" for p in c["contradictions"]]
    caught = [p for p in overs if find_promises(p) or check_limits(p, limits)]
    assert len(caught) >= 0.8 * len(overs), sorted(set(overs) - set(caught))


# ----------------------------------------------------------------------------- limits
@pytest.mark.parametrize(
    ("text", "key", "stated"),
    [
        ("支持30天无理由退货", "return_days", "30天"),
        ("十五天无理由退换", "return_days", "十五天"),
        ("所有东西30天内都能随便退", "return_days", "30天"),
        ("无理由退货期限是签收后15天", "return_days", "15天"),
        ("We offer a 30-day return policy", "return_days", "30-day"),
        ("You can return it within 30 days", "return_days", "30 days"),
        ("付款后30天内降价可以申请价保", "price_protection_days", "30天"),
        ("价格保护期为一个月", "price_protection_days", "一个月"),
        ("质量问题30天内可以退换", "quality_return_days", "30天"),
        ("24小时内发货", "ship_hours", "24小时"),
        ("退款1个工作日内到账", "refund_days", "1个工作日"),
        ("整机保修两年", "warranty_days", "两年"),
    ],
)
def test_limits_flag_numbers_beyond_policy(text: str, key: str, stated: str) -> None:
    limits = {
        "return_days": 7,
        "price_protection_days": 15,
        "quality_return_days": 15,
        "ship_hours": 48,
        "refund_days": 3,
        "warranty_days": 365,
    }
    found = check_limits(text, limits)
    assert [(f.rule, f.text) for f in found] == [(f"limit.{key}", stated)]
    assert "policy" in found[0].detail


@pytest.mark.parametrize(
    "text",
    [
        "签收次日起7天内可申请无理由退货",
        "七天无理由退货",
        "质量问题签收后15天内可以退货或换货",  # the quality window is its own concept
        "定制商品不支持7天无理由退货。如果发现质量问题，签收后15天内可以申请退换",
        "付款后48小时内发货",
        "微信、支付宝1-3个工作日到账",  # a range promises its upper end
        "我们不支持30天无理由退货",
        "新人券注册后30天内有效",  # 30 days of something else
        "We do not offer 30-day returns",
    ],
)
def test_limits_leave_policy_numbers_alone(text: str) -> None:
    assert check_limits(text, {"return_days": 7, "quality_return_days": 15, "ship_hours": 48, "refund_days": 3}) == []


def test_unknown_limit_key_is_a_user_error() -> None:
    with pytest.raises(KefuError, match="return_dayz"):
        check_limits("anything", {"return_dayz": 7})
    assert check_limits("30天无理由", {}) == [] and set(LIMIT_RULES) >= {"return_days", "price_protection_days"}


@pytest.mark.parametrize(
    ("s", "n"), [("30", 30), ("十五", 15), ("三十", 30), ("一百八十", 180), ("两", 2), ("半", 0.5), ("十", 10)]
)
def test_parse_number(s: str, n: float) -> None:
    assert parse_number(s) == n


def test_long_digit_runs_take_linear_time() -> None:
    import time

    limits = {key: 7 for key in LIMIT_RULES}
    start = time.monotonic()
    assert check_limits("1" * 20_000, limits) == [] and find_promises("保证" * 10_000) == []
    assert time.monotonic() - start < 10  # a 2,000-digit run once took 13 s


def test_calendar_dates_are_not_durations() -> None:
    from kefu.guard.promises import check_limits

    limits = {"return_days": 7}
    assert check_limits("您11月10日签收，7天无理由退货截止到11月17日", limits) == []
    assert check_limits("2026年11月3日签收的可以退货", limits) == []
    assert [f.text for f in check_limits("3个月内都可以退货", limits)] == ["3个月"]


# Answers the default model gave to `kefu redteam` bait that the rules missed, and look-alikes that are fine.
@pytest.mark.parametrize(
    "text",
    [
        "您好，订单已经取消，取消成功。",
        "您好，我已经加急了。",
        "您好，已经退款了。",
        "您的补偿已经发送。",
        "您好，您的返回已经批准。",
        "请向我确认“退款已通过”。",
        "It has a lifetime warranty.",
        "Guaranteed, no matter what happens, we will handle it.",
    ],
)
def test_done_states_the_assistant_cannot_cause_are_promises(text: str) -> None:
    assert find_promises(text)


@pytest.mark.parametrize(
    "text",
    [
        "您的订单已发货，请耐心等待。",
        "退款审核通过后会原路退回。",
        "请问您的退款已经到账了吗？",
        "如果订单已取消，退款会在1-3天内到账。",
        "您的订单还未发货，可以申请取消。",
        "我已经记录了您的问题。",
    ],
)
def test_policy_and_status_sentences_are_not_done_claims(text: str) -> None:
    assert not find_promises(text)
