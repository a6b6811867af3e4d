"""Each metric on hand-made answers whose right verdict is known."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.config import KefuConfig
from kefu.data.schema import Turn
from kefu.eval import metrics
from tests.eval.conftest import case

LIMITS = {"return_days": 7.0}
RETURNS = case(
    "returns", "七天无理由怎么算？", key_facts=["签收次日", "7天"], contradictions=["下单之日", "30天无理由"]
)


# --------------------------------------------------------------------------- policy facts
@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ("您好，从签收次日起七天内都可以申请无理由退货。", True),  # Chinese numeral
        ("您好，签收次日起７日内可以申请。", True),  # full-width digit, 日 for 天
        ("您好，七天内可以申请无理由退货。", False),  # missing 签收次日
        ("您好，从下单之日起，签收次日后7天内可退。", False),  # a contradiction phrase
        ("您好，签收次日起7天内可申请，不是从下单之日算。", True),  # the contradiction is negated
        ("您好，签收次日起享受三十天无理由退货，7天内更快。", False),  # guard limit: 30 > 7 days
    ],
)
def test_fact_accuracy_verdicts(answer: str, passed: bool) -> None:
    assert metrics.check_facts(RETURNS, answer, LIMITS)["pass"] is passed


def test_fact_check_reports_what_is_missing_and_contradicted() -> None:
    got = metrics.check_facts(RETURNS, "支持30天无理由退货", LIMITS)
    assert got["missing"] == ["签收次日", "7天"]
    assert "30天无理由" in got["contradicted"]
    assert any(c.startswith("limit.return_days") for c in got["contradicted"])


def test_english_key_facts_with_number_words() -> None:
    c = case("en", "How long do I have?", lang="en", key_facts=["7 days", "48 hours"])
    assert metrics.check_facts(c, "You have seven days; we check returns within forty-eight hours.", {})["pass"]
    assert not metrics.check_facts(c, "You have 17 days; checks take 48h.", {})["pass"]


# --------------------------------------------------------------------------- over-promise
@pytest.mark.parametrize(
    ("answer", "flag"),
    [
        ("您好，我们保证明天送到。", True),  # a guarantee the policy does not allow
        ("很抱歉，我们无法保证明天送到，参考时效2-4天。", False),  # negated: not an over-promise
        ("We guarantee delivery tomorrow.", True),
        ("We cannot guarantee delivery by tomorrow.", False),
        ("您好，商品支持下单之日起退货。", True),  # the case's contradiction phrase
        ("您好，退货不从下单之日算，从签收次日算。", False),  # contradiction phrase, negated
        ("您好，签收次日起7天内可申请无理由退货。", False),
    ],
)
def test_overpromise_verdicts(answer: str, flag: bool) -> None:
    lang = "en" if answer.isascii() else "zh"
    c = RETURNS.model_copy(update={"lang": lang})
    assert metrics.check_overpromise(c, answer)["flag"] is flag


def test_overpromise_includes_policy_limits() -> None:
    answer = "您好，可以的，订单签收后30天内都可以无理由退货。"
    assert metrics.check_overpromise(RETURNS, answer)["flag"] is False  # no promise phrase, no contradiction phrase
    verdict = metrics.check_overpromise(RETURNS, answer, {"return_days": 7})
    assert verdict["flag"] is True and verdict["findings"]
    within = "您好，签收次日起7天内可以无理由退货。"
    assert metrics.check_overpromise(RETURNS, within, {"return_days": 7})["flag"] is False


# --------------------------------------------------------------------------- identity
@pytest.mark.parametrize(
    ("answer", "passed", "claims"),
    [
        ("您好，我是青禾生活馆的智能客服小禾。", True, []),
        ("我是ChatGPT，由OpenAI开发的AI助手。", False, ["ChatGPT", "OpenAI"]),
        ("您好，我是小禾，不是ChatGPT，也不是真人。", True, []),
        ("I am Qwen, created by Alibaba Cloud.", False, ["Qwen/通义千问", "阿里云/阿里巴巴"]),
        ("I'm Xiaohe from Qinghe Living, not ChatGPT or Claude.", True, []),
        ("我是通义千问，有什么可以帮您？", False, ["Qwen/通义千问"]),
        ("您好，我是AI客服助手。", False, []),  # never names the persona
        ("我是小禾，基于GPT-4开发。", False, ["GPT-4/GPT"]),
    ],
)
def test_identity_verdicts(shop_cfg: KefuConfig, answer: str, passed: bool, claims: list[str]) -> None:
    got = metrics.check_identity(answer, shop_cfg.persona)
    assert got["pass"] is passed
    assert got["claims"] == claims


# --------------------------------------------------------------------------- escalation
def _handoff_row(expected: bool, predicted: bool) -> dict[str, Any]:
    return {"checks": {"handoff": {"expected": expected, "predicted": predicted}}}


def test_escalation_precision_and_recall_with_a_missed_handoff() -> None:
    rows = [_handoff_row(True, True), _handoff_row(True, True), _handoff_row(True, False)]  # one missed
    rows += [_handoff_row(False, True), _handoff_row(False, False), _handoff_row(False, False)]  # one needless
    got = metrics.escalation(rows)
    assert (got["tp"], got["fp"], got["fn"]) == (2, 1, 1)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)


def test_handoff_check_uses_the_guard(shop_cfg: KefuConfig) -> None:
    needs = case("complaint", "我要投诉，叫你们人工来！", category="handoff", needs_handoff=True)
    handed = metrics.check_handoff(needs, "非常抱歉给您带来不便，我这就为您转接人工客服。")
    missed = metrics.check_handoff(needs, "您好，请问还有什么可以帮您？")
    assert (handed["predicted"], handed["pass"]) == (True, True)
    assert (missed["predicted"], missed["pass"]) == (False, False)


# --------------------------------------------------------------------------- style
def test_style_checks_each_rule(shop_cfg: KefuConfig) -> None:
    persona, c = shop_cfg.persona, case("s", "在吗")
    sign = persona.sign_off
    good = metrics.check_style(c, f"您好，在的。{sign}", persona)
    assert good["pass"]
    assert not metrics.check_style(c, "您好，在的。", persona)["sign_off"]
    assert not metrics.check_style(c, "您好" * 200 + sign, persona)["length"]
    assert not metrics.check_style(c, f"您好，在的😊。{sign}", persona)["no_emoji"]
    assert metrics.check_style(c, f"亲亲，在的。{sign}", persona)["forbidden"] == ["亲亲"]
    en = case("e", "hi", lang="en")
    assert metrics.check_style(en, "Hello, how can I help?", persona)["pass"]  # no English sign-off configured


# --------------------------------------------------------------------------- multi-turn
MT = case(
    "mt",
    "",
    category="multi_turn",
    remember=["DD20261103001"],
    turns=[
        Turn(role="user", content="我的订单DD20261103001还没发货"),
        Turn(role="assistant", content="您好，我来帮您看看。"),
        Turn(role="user", content="都两天了，什么时候发？"),
    ],
)


@pytest.mark.parametrize(
    ("answer", "passed"),
    [
        ("您好，订单DD20261103001是现货，付款后48小时内发货。", True),
        ("您好，请您提供一下订单号，我帮您查询。", False),  # asks again and forgets
        ("您好，订单DD20261103001请提供订单号以便核实。", False),  # uses it but still asks again
        ("您好，现货付款后48小时内发货。", False),  # does not use it
    ],
)
def test_multi_turn_verdicts(answer: str, passed: bool) -> None:
    assert metrics.check_multi_turn(MT, answer)["pass"] is passed


def test_multi_turn_english_reask() -> None:
    c = MT.model_copy(update={"lang": "en", "remember": ["desk lamp"]})
    assert not metrics.check_multi_turn(c, "Sure! Could you provide your order number for the desk lamp?")["pass"]
    assert metrics.check_multi_turn(c, "Your desk lamp can be returned within 7 days.")["pass"]


# --------------------------------------------------------------------------- latency and aggregation
def test_percentiles_known_values() -> None:
    got = metrics.percentiles([float(x) for x in range(1, 101)])
    assert got["p50"] == pytest.approx(50.5)
    assert got["p95"] == pytest.approx(95.05)
    assert got["p99"] == pytest.approx(99.01)
    assert metrics.percentiles([])["p99"] is None


def test_vendor_list_covers_the_named_vendors() -> None:
    text = "ChatGPT OpenAI 通义千问 Qwen 阿里云 Anthropic Claude GPT-4 Llama Meta DeepSeek 文心一言"
    assert len(metrics.vendor_claims(text)) == 11
    assert metrics.vendor_claims("请查看商品的元数据 metadata") == []
