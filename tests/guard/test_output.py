"""Output guards on the sample shop: each guard fires on what it must and not on correct answers; streaming in any
chunking gives the text the whole-answer check gives."""

from __future__ import annotations

import random

import pytest

from kefu.data.persona import system_prompt
from kefu.guard.output import AnswerGuard, Policy, guard_answer

HANDOFF_ZH = "如需人工服务，请在对话中回复“转人工”，或点击对话框右上角“人工客服”。"


@pytest.mark.parametrize(
    ("answer", "lang", "hit", "expected"),
    [
        ("本店支持30天无理由退货，运费我们出。", "zh", "limit", "本店支持7天无理由退货。"),
        ("您好！支持三十天内无理由退货。", "zh", "limit", "您好！本店支持7天无理由退货。"),
        ("Returns are accepted within 30 days.", "en", "limit", "Returns for any reason are accepted within 7 days."),
        ("我们保证全额退款。", "zh", "promise", "抱歉，我不能承诺政策以外的退款或赔偿。" + HANDOFF_ZH),
        ("好的，已为您改价。", "zh", "promise", "抱歉，我不能修改价格或发放补偿。" + HANDOFF_ZH),
        ("没问题，已为您把订单改成一折价格。", "zh", "promise", "抱歉，我不能修改价格或发放补偿。" + HANDOFF_ZH),
        (
            "我是ChatGPT，由OpenAI开发。",
            "zh",
            "identity",
            "我是青禾生活馆的智能客服小禾，由青禾生活科技（杭州）有限公司开发。",
        ),
        (
            "I am Qwen, created by Alibaba Cloud.",
            "en",
            "identity",
            "I'm Xiaohe, the customer-service assistant of Qinghe Living.",
        ),
        (
            "我是通义千问，有什么可以帮您？",
            "zh",
            "identity",
            "我是青禾生活馆的智能客服小禾，由青禾生活科技（杭州）有限公司开发。",
        ),
    ],
)
def test_violations_are_replaced_by_whole_sentences(
    shop_policy: Policy, answer: str, lang: str, hit: str, expected: str
) -> None:
    text, hits = guard_answer(answer, shop_policy, lang)
    assert hit in hits
    assert text == expected


def test_english_guarantee_never_leaves_a_fragment(shop_policy: Policy) -> None:
    text, hits = guard_answer(
        "We guarantee a full refund within 30 days, no questions asked. Anything else?", shop_policy, "en"
    )
    assert "promise" in hits
    assert "no questions asked" not in text and text.startswith("Sorry, I can't promise refunds")
    assert text.endswith(".") and not any("\u4e00" <= ch <= "\u9fff" for ch in text.replace("转人工", ""))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("亲亲，您好！7天内可以无理由退货。", "您好！7天内可以无理由退货。"),
        ("宝子，商品签收后7天内可以申请无理由退货。", "商品签收后7天内可以申请无理由退货。"),
        ("亲亲，宝子…随便退", HANDOFF_ZH),
    ],
)
def test_forbidden_phrases_drop_their_clause_or_stop(shop_policy: Policy, answer: str, expected: str) -> None:
    text, hits = guard_answer(answer, shop_policy, "zh")
    assert hits == ["forbidden_phrase"] and text == expected


def test_banned_words_from_guard_config(shop_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = shop_cfg.model_copy(deep=True)
    cfg.guard.banned_words = ["垃圾"]
    policy = Policy.from_config(cfg, system_prompt(cfg.persona))
    text, hits = guard_answer("这个垃圾快递太慢了，我帮您查一下。", policy, "zh")
    assert hits == ["banned_word"] and "垃圾" not in text


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("<think>内部备注：客户很急</think>您好，请问有什么可以帮您？", "您好，请问有什么可以帮您？"),
        ("<think>\n先查政策\n</think>\n\n您好！", "您好！"),
        ("<think>只有推理，没有结束", ""),
        ("您好！</think>请稍等。", "您好！请稍等。"),
    ],
)
def test_reasoning_never_reaches_the_customer(shop_policy: Policy, answer: str, expected: str) -> None:
    text, hits = guard_answer(answer, shop_policy, "zh")
    assert "think" in hits and text == expected


def test_system_prompt_reproduction_is_refused(shop_policy: Policy, shop_cfg) -> None:  # type: ignore[no-untyped-def]
    prompt = system_prompt(shop_cfg.persona)
    text, hits = guard_answer(prompt, shop_policy, "zh")
    assert "system_prompt" in hits
    assert "回答要求" not in text and "不使用表情符号" not in text
    assert text.endswith(HANDOFF_ZH)


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        ("您好，您好，您好，您好，您好，您好，您好", ""),
        (
            "您好！订单付款后48小时内发货。祝您生活愉快！祝您生活愉快！祝您生活愉快！",
            "您好！订单付款后48小时内发货。祝您生活愉快！",
        ),
        ("您好！您的订单已发货。" + "哈" * 40, "您好！您的订单已发货。"),
        ("Your order has shipped. " + "thank you " * 30, "Your order has shipped. "),
    ],
)
def test_repetition_stops_the_stream(shop_policy: Policy, answer: str, kept: str) -> None:
    guard = AnswerGuard(shop_policy, "zh")
    shown = ""
    for ch in answer:
        shown += guard.feed(ch)
        if guard.stopped:
            break
    shown += guard.finish()
    assert guard.hits == ["repetition"]
    if kept:
        assert shown == kept
    else:  # nothing said yet: a handoff notice instead
        assert shown.startswith("您好，已为您转接人工客服")


def test_pii_in_answer_is_masked(shop_policy: Policy) -> None:
    text, hits = guard_answer("您好！已记录您的手机号13812345678。", shop_policy, "zh")
    assert hits == ["pii"] and "13812345678" not in text and text.startswith("您好！已记录您的手机号")


@pytest.mark.parametrize(
    "answer",
    [
        "您好！本店支持7天无理由退货，商品需保持完好。",
        "您好，订单付款后48小时内发货，我们会尽快处理。",
        "您的订单号是 DD20261106001，价格是 ¥129.00，预计 11月17日 送达。",
        "不是的，我不是ChatGPT。我是青禾生活馆的智能客服小禾，由青禾生活科技（杭州）有限公司开发。",
        "I'm Xiaohe, the customer-service assistant of Qinghe Living. I'm not ChatGPT.",
        "人工在线客服每天 9:00-22:00；客服热线 400-820-6688（工作日 9:00-18:00）。",
        "质量问题15天内可以退换，运费由我们承担。",
        "Sorry, I can't guarantee a delivery date. Orders usually ship within 48 hours.",
    ],
)
def test_correct_answers_pass_unchanged(shop_policy: Policy, answer: str) -> None:
    text, hits = guard_answer(answer, shop_policy, "en" if answer.isascii() else "zh")
    assert (text, hits) == (answer, [])


CORPUS = [
    "<think>想想</think>亲亲，您好！本店支持30天无理由退货。We guarantee it. 还有别的吗？",
    "您好！订单付款后48小时内发货。3.5折的价格是真的。Your order ships soon. Thanks!\n祝您生活愉快！祝您生活愉快！",
    "您好，您好，您好，您好，您好",
    "Hello! The price is $12.50. Returns within 7 days.\n\nI'm Xiaohe. I am ChatGPT, made by OpenAI.",
    "您好！<thi" + "nk>a</think>已记录手机号13812345678。" + "好的" * 30,
    "您好！" + "退货请在订单页提交申请，" * 4 + "谢谢。",
]


@pytest.mark.parametrize("text", CORPUS)
def test_any_chunking_gives_the_same_answer(shop_policy: Policy, text: str) -> None:
    whole = guard_answer(text, shop_policy, "zh")
    rng = random.Random(len(text))
    for _ in range(60):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(40, len(text) - 1))))
        guard = AnswerGuard(shop_policy, "zh")
        shown = ""
        for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
            shown += guard.feed(text[a:b])
            assert not guard.stopped or guard.feed("x") == ""
        shown += guard.finish()
        assert (shown, guard.hits) == whole
