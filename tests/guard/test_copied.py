"""A near-copy of an excerpt sentence with a number or day changed gets the excerpt's back; exact copies,
rephrasings and sentences that say more are left alone."""

from __future__ import annotations

import pytest

from kefu.config import KefuConfig
from kefu.guard.copied import excerpt_sentences, own_name, restored
from kefu.guard.output import Policy, guard_answer

SHIPPING = (
    "现货商品在付款后 36 小时内发货。每天 14:30 之前付款的现货订单当天发出，14:30 之后付款的次日发出。"
    "周日和法定节假日仓库休息，订单顺延到下一个工作日发出。"
)
FEES = "- 偏远地区（新疆、西藏）运费 15 元，实付满 199 元包邮；\n- 江浙沪皖运费 8 元，实付满 99 元包邮。"
CLOSED = "周日和法定节假日仓库休息，订单顺延到下一个工作日发出"
SOURCES = excerpt_sentences([SHIPPING, FEES, "Refunds reach bank cards within 5 business days."])


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        (f"{CLOSED.replace('周日', '周六')}[1]。", f"{CLOSED}[1]。"),
        (f"您好，{CLOSED.replace('周日', '周六')}。", f"您好，{CLOSED}。"),
        ("现货商品在付款后 48 小时内发货。", "现货商品在付款后 36 小时内发货。"),
        ("江浙沪皖运费 8 元，实付满 199 元包邮。", "江浙沪皖运费 8 元，实付满 99 元包邮。"),
        ("Refunds reach bank cards within 7 business days.", "Refunds reach bank cards within 5 business days."),
    ],
)
def test_changed_numbers_and_days_are_put_back(said: str, expected: str) -> None:
    assert restored(said, SOURCES) == expected


@pytest.mark.parametrize(
    "said",
    [
        "现货商品在付款后 36 小时内发货。",  # an exact copy
        "偏远地区（新疆、西藏）运费 15 元，实付满 199 元包邮。",  # an exact copy of the other list line
        "周六不发货。",  # too short to tell a copy from chance
        "您周六下的单，会在周一发出，周日仓库休息。",  # the customer's case worked out, not a copy
        "现货商品在付款后 36 小时内发货，预售商品按页面时间发货。",  # says more than the excerpt
        "Refunds reach your card within 5 business days.",  # rephrased
    ],
)
def test_other_sentences_are_left_alone(said: str) -> None:
    assert restored(said, SOURCES) == said


def test_the_guard_restores_and_reports_it(shop_cfg: KefuConfig) -> None:
    policy = Policy.from_config(shop_cfg, "")
    answer = "您好，周六和法定节假日仓库休息，订单顺延到下一个工作日发出[1]。还有其他问题随时找小禾。"
    text, hits = guard_answer(answer, policy, "zh", [SHIPPING])
    assert text == answer.replace("周六", "周日") and hits == ["copy"]
    assert guard_answer(answer, policy, "zh") == (answer, [])  # nothing shown, nothing to compare with


def test_a_hyphen_between_numbers_is_compared() -> None:
    """ "2-3 天" is not "23 天": a range changed inside is put back, list markers are not part of the rule."""
    sources = excerpt_sentences(["- 燃气罐只能走陆运专线，时效比普通快递慢 2-3 天。"])
    assert sources == ["燃气罐只能走陆运专线，时效比普通快递慢2-3天"]
    assert (
        restored("燃气罐只能走陆运专线，时效比普通快递慢 2-4 天。", sources)
        == "燃气罐只能走陆运专线，时效比普通快递慢 2-3 天。"
    )


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("您好，我是阿里，山岚户外的智能客服，不是真人。", "您好，我是阿岚，山岚户外的智能客服，不是真人。"),
        ("我叫阿蓝。", "我叫阿岚。"),
        ("我是阿岚，很高兴为您服务。", "我是阿岚，很高兴为您服务。"),
        ("我是阿里巴巴开发的。", "我是阿里巴巴开发的。"),  # not a name alone: the identity guard's to judge
        ("我是小米，", "我是小米，"),  # two characters off: another name, not a slip
    ],
)
def test_the_persona_name_one_character_off_is_spelled_right(said: str, expected: str) -> None:
    assert own_name(said, "阿岚") == expected
