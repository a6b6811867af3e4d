"""Persona -> system prompt and identity Q&A that follow the style rules."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from kefu.config import PersonaConfig
from kefu.data.persona import ACTIONS, action_answer, identity_conversations, styled, system_prompt

EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf]")


@pytest.fixture
def persona() -> PersonaConfig:
    return PersonaConfig(
        name="小禾",
        name_en="Xiaohe",
        shop="青禾生活馆",
        shop_en="Qinghe Living",
        company="青禾生活科技有限公司",
        can_do=["查询物流进度", "解答退换货政策"],
        cannot_do=["修改价格或发放补偿", "保证具体送达日期"],
        hours="每天 9:00-22:00",
        hours_en="9:00-22:00 every day",
        handoff="回复“转人工”",
        greeting="您好",
        sign_off="还有问题随时找小禾。",
        max_chars=120,
        forbidden_phrases=["亲亲", "我是ChatGPT"],
    )


def test_identity_data_is_varied_seeded_and_styled(persona: PersonaConfig) -> None:
    convs = identity_conversations(persona, 80, seed=7)
    assert len(convs) == 80
    questions = [c.turns[0].content for c in convs]
    assert len(set(questions)) == 80
    assert [c.turns[0].content for c in identity_conversations(persona, 80, seed=7)] == questions
    assert questions != [c.turns[0].content for c in identity_conversations(persona, 80, seed=8)]
    langs = Counter(c.meta["lang"] for c in convs)
    assert langs["zh"] > langs["en"] > 10
    kinds = {c.meta["kind"] for c in convs}
    assert {"who", "human", "name", "model", "maker", "abilities", "handoff", "hours", "action"} <= kinds
    for c in convs:
        answer = c.turns[1].content
        assert c.meta["source"] == "persona" and c.meta["topic"] == "identity"
        assert len(answer) <= persona.max_chars
        assert not EMOJI.search(answer)
        assert "亲亲" not in answer and "我是ChatGPT" not in answer
        assert answer.startswith("您好" if c.meta["lang"] == "zh" else "Hello")


def test_names_company_and_honesty_in_answers(persona: PersonaConfig) -> None:
    convs = identity_conversations(persona, 150, seed=1)
    by_kind: dict[tuple[str, str], list[str]] = {}
    for c in convs:
        by_kind.setdefault((c.meta["lang"], c.meta["kind"]), []).append(c.turns[1].content)
    assert all("小禾" in a for a in by_kind[("zh", "name")])
    assert all("Xiaohe" in a for a in by_kind[("en", "name")])
    assert all("青禾生活科技有限公司" in a for a in by_kind[("zh", "maker")])
    assert all("不是" in a for a in by_kind[("zh", "model")])
    assert all("not" in a for a in by_kind[("en", "model")])
    assert all("9:00-22:00" in a for a in by_kind[("zh", "hours")] + by_kind[("en", "hours")])
    assert all("转人工" in a for a in by_kind[("zh", "handoff")])
    # "are you a real person?": who answers, that it is not a person, and how to get one
    assert all("小禾" in a and "不是真人" in a and "转人工" in a for a in by_kind[("zh", "human")])
    assert all("Xiaohe" in a and "not a person" in a for a in by_kind[("en", "human")])


def test_can_and_cannot_decide_action_answers(persona: PersonaConfig) -> None:
    address, _refund, price, delivery, tracking = ACTIONS
    assert "不能修改价格或发放补偿" in action_answer(persona, price, "zh")
    assert "不能保证具体送达日期" in action_answer(persona, delivery, "zh")
    assert "可以" in action_answer(persona, tracking, "zh")
    assert "需要人工客服来处理" in action_answer(persona, address, "zh")  # in neither list: never promise it
    assert action_answer(persona, address, "en").startswith("Sorry, I can't change your shipping address")
    assert action_answer(persona, tracking, "en").startswith("Yes")


def test_style_rules(persona: PersonaConfig) -> None:
    persona.max_chars = 30
    text = styled(persona, "第一句话比较长一些。第二句话也不短。第三句话就超出了限制。", "zh")
    assert len(text) <= 30 and text.endswith("。") and text.startswith("您好，")
    happy = styled(persona.model_copy(update={"emoji": False}), "好的😊", "zh")
    assert "😊" not in happy
    assert "😊" in styled(persona.model_copy(update={"emoji": True, "sign_off": ""}), "好的😊", "zh")


def test_system_prompt_carries_the_persona(persona: PersonaConfig) -> None:
    prompt = system_prompt(persona)
    for needle in ["小禾", "Xiaohe", "青禾生活馆", "青禾生活科技有限公司", "查询物流进度", "修改价格或发放补偿",
                   "9:00-22:00", "回复“转人工”", "不使用表情符号", "120", "“亲亲”"]:  # fmt: skip
        assert needle in prompt


def test_zero_samples(persona: PersonaConfig) -> None:
    assert identity_conversations(persona, 0) == []


def test_system_prompt_override_is_used_verbatim() -> None:
    from kefu.config import PersonaConfig
    from kefu.data.persona import system_prompt

    assert system_prompt(PersonaConfig(system_prompt="你是网店客服。")) == "你是网店客服。"
    assert "小客" in system_prompt(PersonaConfig())


def test_a_matching_can_do_beats_a_cannot_do_on_the_same_object() -> None:
    """'可以帮我查一下订单吗' was answered '我不能修改订单': the object matched, the verb did not."""
    p = PersonaConfig(can_do=["查询订单和物流进度"], cannot_do=["修改订单", "退款"])
    tracking = ACTIONS[-1]
    assert action_answer(p, tracking, "zh").startswith("可以的，我可以帮您查询订单和物流进度")
    assert action_answer(p, tracking, "en").startswith("Yes")
    only_cannot = PersonaConfig(cannot_do=["修改订单"])
    assert "不能" not in action_answer(only_cannot, tracking, "zh")  # 修改 is not 查: no refusal taught
    refund = ACTIONS[1]
    assert "我不能退款" in action_answer(p, refund, "zh")


CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef]")


def test_english_answers_are_english_and_whole_sentences() -> None:
    """Empty hours_en/handoff_en/company_en must not splice Chinese into English answers; a handoff_en without
    a full stop must not run into the sign-off ('...chat window Feel free to ask...')."""
    bare = PersonaConfig(name="小禾", shop="青禾生活馆", hours="人工客服每天 9:00-21:00", sign_off="还有问题随时问我。")
    unpunctuated = bare.model_copy(update={"handoff_en": 'Tap "Human agent" at the top right of the chat window'})
    for p in (bare, unpunctuated):
        english = [c.turns[1].content for c in identity_conversations(p, 200, seed=3) if c.meta["lang"] == "en"]
        assert len(english) > 40
        for answer in english:
            assert not CJK.search(answer.replace(p.name, "")), answer
            # each sentence kefu joins (sign-off, hours, handoff) starts after a full stop
            assert not re.search(r"[\w\"] (Feel free|Human agents|To reach|Tap)", answer), answer
    hours = [c.turns[1].content for c in identity_conversations(bare, 200, seed=3) if c.meta["kind"] == "hours"]
    assert any("9:00-21:00 (China time)" in a for a in hours)


def test_hours_written_as_a_sentence_are_not_prefixed_twice() -> None:
    p = PersonaConfig(hours="人工客服每天 9:00-21:00")
    texts = [c.turns[1].content for c in identity_conversations(p, 120, seed=5)] + [system_prompt(p)]
    assert not any("人工客服时间：人工客服" in t or "时间是人工客服" in t for t in texts)


def test_identity_data_teaches_few_refusals(persona: PersonaConfig) -> None:
    """Trained on identity data where a third of the answers refused, the model refused ordinary questions."""
    convs = identity_conversations(persona, 120, seed=11)
    refusing = [c for c in convs if re.search(r"抱歉|不能|Sorry|can't", c.turns[1].content)]
    assert len(refusing) / len(convs) < 0.15
    assert {"greet", "thanks"} <= {c.meta["kind"] for c in convs}
