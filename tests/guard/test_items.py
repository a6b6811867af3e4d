"""Answers keep to the list item asked about: shop 2's warranty list, its service lines, English lists; nothing is
dropped when the question names no item, names several, or only shares a word with one."""

from __future__ import annotations

import random

import pytest

from kefu.config import KefuConfig
from kefu.guard.items import list_items, off_item
from kefu.guard.output import AnswerGuard, Policy, guard_answer

WARRANTY = (
    "# 保修与维修 > 保修期\n"
    "- 帐篷、背包：自签收起保修 2 年，包括缝线开裂、扣具断裂、帐杆非人为断裂。\n"
    "- 冲锋衣、软壳：防水压胶和面料脱层保修 1 年。\n"
    "- 登山杖、头灯等小件：保修 6 个月。\n\n"
    "保修期内的维修免费，来回运费由山岚户外承担。"
)
WHOLE = (
    "您好，帐篷、背包：自签收起保修 2 年，包括缝线开裂、扣具断裂、帐杆非人为断裂。冲锋衣、软壳：防水压胶和面料脱层"
    "保修 1 年。登山杖、头灯等小件：保修 6 个月[1]。祝您出行顺利！"
)
SERVICE = (
    "> - 在线人工客服：每天 9:00-22:00\n> - 客服热线：400-820-6688（工作日 9:00-18:00）\n"
    "> - 留言：人工客服在次日 10:00 前回复"
)
TENTS = "您好，帐篷、背包：自签收起保修 2 年，包括缝线开裂、扣具断裂、帐杆非人为断裂。[1]祝您出行顺利！"


@pytest.fixture(scope="module")
def policy(shop_cfg: KefuConfig) -> Policy:
    p = shop_cfg.persona.model_copy(update={"greeting": "您好", "sign_off": "祝您出行顺利！", "forbidden_phrases": []})
    return Policy.from_config(shop_cfg.model_copy(update={"persona": p}), "")


def test_list_items_reads_subjects_and_terms() -> None:
    items = list_items([WARRANTY])
    assert [(i.subject, i.terms) for i in items] == [
        ("帐篷、背包", ("帐篷", "背包")),
        ("冲锋衣、软壳", ("冲锋衣", "软壳")),
        ("登山杖、头灯等小件", ("登山杖", "头灯")),
    ]
    # A clock's colon is no separator and a clause is no subject; a single line is no list.
    assert [i.subject for i in list_items(["- 非人工时间的留言，人工客服在次日 10:00 前回复\n- 热线：400"])] == []
    assert list_items(["- 客服热线：400-820-6688"]) == []


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("登山杖保修多久", "您好，登山杖、头灯等小件：保修 6 个月[1]。祝您出行顺利！"),
        ("帐篷保修几年", TENTS),
        ("背包用了一个月肩带就断线了", TENTS),
    ],
)
def test_other_items_are_dropped(policy: Policy, question: str, expected: str) -> None:
    assert guard_answer(WHOLE, policy, "zh", [WARRANTY], question) == (expected, ["off_item"])


@pytest.mark.parametrize("question", ["保修期多久", "冲锋衣和帐篷保修多久", "你们保修怎么算的", ""])
def test_nothing_dropped_unless_one_item_is_asked_about(policy: Policy, question: str) -> None:
    text, hits = guard_answer(WHOLE, policy, "zh", [WARRANTY], question)
    if question.startswith("冲锋衣"):  # two of three named: the third goes
        assert "登山杖" not in text and "冲锋衣" in text and "帐篷" in text and hits == ["off_item"]
    else:
        assert (text, hits) == (WHOLE, [])


def test_a_shared_word_is_not_a_name() -> None:
    """ "客服热线和人工几点" names the hotline and, by 人工 (in no sibling's subject), the online hours too."""
    items = list_items([SERVICE])
    online, hotline = "在线人工客服：每天 9:00-22:00。", "客服热线：400-820-6688。"
    assert not off_item(online, "客服热线和人工几点", items)
    assert not off_item(hotline, "客服热线和人工几点", items)
    assert off_item(online, "客服热线多少", items)
    assert off_item(hotline, "在线客服几点下班", items)


def test_english_lists() -> None:
    items = list_items(["- Tents and backpacks: 2 years.\n- Jackets: 1 year.\n- Poles, headlamps: 6 months."])
    assert off_item("Jackets: 1 year.", "How long is the warranty on a backpack?", items)
    assert not off_item("Tents and backpacks: 2 years.", "How long is the warranty on a backpack?", items)
    assert not off_item("Jackets: 1 year.", "What's the warranty?", items)


def test_streaming_drops_the_same(policy: Policy) -> None:
    whole = guard_answer(WHOLE, policy, "zh", [WARRANTY], "帐篷保修几年")
    rng = random.Random(7)
    for _ in range(40):
        cuts = sorted(rng.sample(range(1, len(WHOLE)), rng.randint(1, 30)))
        guard = AnswerGuard(policy, "zh", [WARRANTY], "帐篷保修几年")
        shown = "".join(guard.feed(WHOLE[a:b]) for a, b in zip([0, *cuts], [*cuts, len(WHOLE)], strict=True))
        assert (shown + guard.finish(), guard.hits) == whole


def test_numbered_steps_are_not_a_list_of_items() -> None:
    """A procedure's steps all belong in an answer about one of them."""
    steps = "1. 登录账号：打开 App 登录。\n2. 进入订单：在「我的订单」找到这一单。\n3. 提交申请：选择退货原因。"
    assert list_items([steps]) == []
