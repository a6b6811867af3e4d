"""Output guards on the sample shop: each guard fires on what it must and not on correct answers; streaming in any
chunking gives the text the whole-answer check gives."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import pytest

from kefu.data.persona import system_prompt
from kefu.guard.notices import notice
from kefu.guard.output import AnswerGuard, Policy, guard_answer

HANDOFF_ZH = "如需人工服务，请在对话中回复“转人工”，或点击对话框右上角“人工客服”。"
SIGN = {"zh": "还有其他问题随时找小禾。", "en": " Feel free to ask me anything else."}


def signed(replacement: str, lang: str = "zh") -> str:
    """A guard's replacement as the customer reads it: closed with the persona's sign-off."""
    return replacement + SIGN[lang]


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
    assert text == signed(expected, lang)


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
        ("亲亲，宝子…随便退", signed(HANDOFF_ZH)),
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
        ("<think>只有推理，没有结束", "NO_MATCH"),
        ("您好！</think>请稍等。", "您好！请稍等。"),
    ],
)
def test_reasoning_never_reaches_the_customer(shop_policy: Policy, answer: str, expected: str) -> None:
    text, hits = guard_answer(answer, shop_policy, "zh")
    assert "think" in hits
    assert text == (signed(notice(shop_policy.persona, "no_match", "zh")) if expected == "NO_MATCH" else expected)


def test_system_prompt_reproduction_is_refused(shop_policy: Policy, shop_cfg) -> None:  # type: ignore[no-untyped-def]
    prompt = system_prompt(shop_cfg.persona)
    text, hits = guard_answer(prompt, shop_policy, "zh")
    assert "system_prompt" in hits
    assert "回答要求" not in text and "不使用表情符号" not in text
    assert text.endswith(signed(HANDOFF_ZH))


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
        ("租期 3 天起租，最长 30 天[1]。租期 3 天起租，最长 30 天[2]。", "租期 3 天起租，最长 30 天[1]。"),
        # the greeting opening the first sentence does not make the second another rule (shop 2, session 14)
        ("您好，租期 3 天起租，最长 30 天。租期 3 天起租，最长 30 天[1]。", "您好，租期 3 天起租，最长 30 天。"),
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


def test_shop_own_contacts_are_not_masked(shop_policy: Policy) -> None:
    """The hotline of the persona, or a number the retrieved excerpts give, is the answer, not personal data;
    a customer's number in the same answer is still masked."""
    text, hits = guard_answer("客服热线是 400 820 6688，工作日可以打。", shop_policy, "zh")
    assert hits == [] and "400 820 6688" in text
    guard = AnswerGuard(shop_policy, "zh", ["售后邮箱 after-sales@qinghe.example，电话 021-5555-1234"])
    shown = guard.feed("可以打 021-5555-1234 或写信到 After-Sales@qinghe.example，您的 13812345678 已登记。")
    shown += guard.finish()
    assert "021-5555-1234" in shown and "After-Sales@qinghe.example" in shown and "13812345678" not in shown


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


@pytest.mark.parametrize(
    "answer",
    [
        "一个月内都可以退货哦。",
        "本店支持十五天无理由退货。",
        "We offer 30-day returns on everything.",
        "质量问题签收后30天内都可以申请换货。",
        "订单付款后12小时内发货。",
    ],
)
def test_limits_in_words_numerals_and_english(shop_policy: Policy, answer: str) -> None:
    _, hits = guard_answer(answer, shop_policy, "en" if answer.isascii() else "zh")
    assert hits == ["limit"]


def test_replacement_quotes_the_excerpt_that_holds_the_fact(shop_policy: Policy) -> None:
    excerpts = [
        "Returns: unused items can be returned within 7 days of delivery.",
        "退换货：商品签收后7天内可申请无理由退货\n质量问题15天内可退换。",
    ]
    zh, _ = guard_answer("您好！本店支持30天无理由退货。", shop_policy, "zh", excerpts)
    assert zh == signed("您好！商品签收后7天内可申请无理由退货。")
    en, _ = guard_answer("Hello! You can return it within 30 days.", shop_policy, "en", excerpts)
    assert en == signed("Hello! Unused items can be returned within 7 days of delivery.", "en")
    wrong = ["本店支持30天无理由退货。"]  # an excerpt that itself breaks policy is not quoted
    assert guard_answer("支持30天退货。", shop_policy, "zh", wrong)[0] == signed("本店支持7天无理由退货。")


def test_saying_the_excerpts_do_not_answer_beside_one_quotes_it(shop_policy: Policy) -> None:
    excerpts = [
        "- 退换货：商品签收后7天内可申请无理由退货\n- 质量问题15天内可退换。",
        "Returns: unused items can be returned within 7 days of delivery.",
    ]
    unsure = "您好，抱歉，参考资料里没有找到这个问题的答案，我不能随便回答。" + HANDOFF_ZH + "还有问题随时找小禾。"
    zh, hits = guard_answer(unsure, shop_policy, "zh", excerpts)
    assert hits == ["unanswered"]
    assert zh == signed(
        "您好，这个问题我没法确定，最相关的店铺规定是：退换货：商品签收后7天内可申请无理由退货。质量问题15天内可退换[1]。"
        + HANDOFF_ZH
    )
    en, _ = guard_answer("Hello! Sorry, the reference excerpts don't answer this, so I won't guess.", shop_policy, "en",
                         excerpts)  # fmt: skip
    assert en.startswith("Hello! I can't answer that for certain; the closest shop policy says: Returns: unused")
    assert "within 7 days of delivery[2]." in en
    # Nothing shown, or nothing in the customer's language: the reply stands (no Chinese quoted to an English reader).
    assert guard_answer(unsure, shop_policy, "zh")[1] == []
    plain = "Hello! Sorry, the reference excerpts don't answer this, so I won't guess."
    assert guard_answer(plain, shop_policy, "en", excerpts[:1]) == (plain, [])
    streamed = AnswerGuard(shop_policy, "zh", excerpts)
    assert "".join(streamed.feed(c) for c in unsure) + streamed.finish() == zh


def test_a_violation_stops_the_stream_and_finish_gives_the_replacement(shop_policy: Policy) -> None:
    guard = AnswerGuard(shop_policy, "en")
    shown = guard.feed("Hello! Your order ships within 48 hours. ")
    assert shown == "Hello! " and not guard.stopped  # a sentence goes out once the next one has begun
    shown += guard.feed("We guarantee it arrives tomorrow. ")
    assert shown == "Hello! Your order ships within 48 hours. " and not guard.stopped
    shown += guard.feed("More")
    assert guard.stopped and guard.feed(" text.") == ""
    shown += guard.finish()
    assert shown == (
        "Hello! Your order ships within 48 hours. Sorry, I can't guarantee a specific delivery date. "
        "Orders usually ship within 48 hours of payment. " + shop_policy.persona.handoff_en + "." + SIGN["en"]
    )
    assert guard.hits == ["promise"] and guard.finish() == ""


def test_prompt_that_opened_reasoning(shop_policy: Policy) -> None:
    opened = dataclasses.replace(shop_policy, think_open=True)
    assert guard_answer("先查一下退货政策。</think>\n\n您好！", opened, "zh") == ("您好！", ["think"])


@pytest.mark.parametrize(
    ("answer", "lang", "hit"),
    [
        ("好的，请把您收到的验证码发给我。", "zh", "secret_request"),
        ("Please send me your verification code.", "en", "secret_request"),
        ("I've issued a refund to your card.", "en", "promise"),
        ("As an AI developed by OpenAI, I can help.", "en", "identity"),
        ("我是一个由OpenAI训练的大型语言模型。", "zh", "identity"),
        ("您好，保证明天到，放心吧。", "zh", "promise"),
    ],
)
def test_more_violations(shop_policy: Policy, answer: str, lang: str, hit: str) -> None:
    text, hits = guard_answer(answer, shop_policy, lang)
    assert hit in hits and text and text[-1] in "。."


@pytest.mark.parametrize(
    "answer",
    [
        "为了账户安全，请不要把验证码告诉任何人，包括客服。",
        "门店地址可以用百度地图搜索“青禾生活馆”。",
        "This kettle works with Google Home.",
        "我是青禾生活馆的智能客服小禾，由青禾生活科技（杭州）有限公司开发。",
        "I'm Xiaohe (小禾), made by 青禾生活科技（杭州）有限公司, not by OpenAI.",
        "您好！价格是3.5元一个，满10个9.5折。",
    ],
)
def test_more_correct_answers(shop_policy: Policy, answer: str) -> None:
    lang = "en" if answer[:4].isascii() else "zh"
    assert guard_answer(answer, shop_policy, lang) == (answer, [])


def test_system_prompt_quoted_in_pieces_is_refused(shop_policy: Policy) -> None:
    quoted = "Sure! Here are my instructions: 回答要求：以“您好”开头；以“还有其他问题随时找小禾。”结尾；不使用表情符号"
    text, hits = guard_answer(quoted, shop_policy, "zh")
    assert hits == ["system_prompt"] and "不使用表情符号" not in text


@pytest.mark.parametrize(
    ("answer", "lang", "hit"),
    [
        ("Our return window is 30 days.", "en", "limit"),
        ("退货期限是30天。", "zh", "limit"),
        ("You have 30 days to return it.", "en", "limit"),
        ("You can return it within two weeks.", "en", "limit"),
        ("Returns are accepted within a month.", "en", "limit"),
        ("It ships within a day.", "en", "limit"),
        ("我会给您退款的，放心。", "zh", "promise"),
        ("退款我已经帮您提交了，请等待审核。", "zh", "promise"),
        ("没问题，这单给您免运费。", "zh", "promise"),
        ("我给您打个九折吧。", "zh", "promise"),
        ("I can give you a 20% discount.", "en", "promise"),
        ("Sure, I'll change the price to $10 for you.", "en", "promise"),
    ],
)
def test_price_actions_and_return_windows(shop_policy: Policy, answer: str, lang: str, hit: str) -> None:
    assert hit in guard_answer(answer, shop_policy, lang)[1]


@pytest.mark.parametrize(
    "answer",
    ["收到退货并审核通过后，我们会为您退款。", "满99元给您免运费。", "如果符合条件，我们会为您退款。", "退货期是7天。"],
)
def test_conditional_refunds_and_thresholds_pass(shop_policy: Policy, answer: str) -> None:
    assert guard_answer(answer, shop_policy, "zh") == (answer, [])


_PIECES = (
    "您好",
    "，",
    "。",
    "！",
    "<think>",
    "</think>",
    "<thi",
    "nk>",
    "30天无理由退货",
    "我是ChatGPT",
    "亲亲",
    " ",
    ".",
    "\n",
    "保证",
    "退款",
    "Hello",
    "We guarantee",
    " a refund",
    "3.5",
    "13812345678",
    "祝您生活愉快",
    "？",
    "的",
)


@pytest.mark.parametrize("seed", range(8))
def test_random_texts_stream_like_whole(shop_policy: Policy, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40)))
        lang = rng.choice(("zh", "en"))
        whole = guard_answer(text, shop_policy, lang)
        cuts = sorted(set(rng.randint(1, max(1, len(text) - 1)) for _ in range(rng.randint(0, 12))))
        guard = AnswerGuard(shop_policy, lang)
        shown = "".join(guard.feed(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True))
        assert (shown + guard.finish(), guard.hits) == whole, text


@pytest.mark.parametrize(
    ("answer", "hit"),
    [("本店支持３０天无理由退货。", "limit"), ("我是Chat\u200bGPT。", "identity"), ("我是ＱＷＥＮ。", "identity")],
)
def test_full_width_and_zero_width_are_read_as_shown(shop_policy: Policy, answer: str, hit: str) -> None:
    assert hit in guard_answer(answer, shop_policy, "zh")[1]


def test_limit_prefilter_changes_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-key trigger words only skip work: with them disabled every verdict on the shop's answers is the same."""
    from kefu.guard import limits as rules

    data = (Path(rules.__file__).parents[1] / "samples/shop/data/preference.jsonl").read_text(encoding="utf-8")
    texts = [t for line in data.splitlines() for t in (json.loads(line)["chosen"], json.loads(line)["rejected"])]
    limits = dict.fromkeys(rules.LIMIT_RULES, 1.0) | {"ship_hours": 100.0, "refund_days": 100.0}
    with_triggers = [rules.check_limits(t, limits) for t in texts]
    everything = re.compile("")
    monkeypatch.setattr(rules, "_LIMIT_TRIGGERS", dict.fromkeys(rules.LIMIT_RULES, everything))
    assert [rules.check_limits(t, limits) for t in texts] == with_triggers
    assert sum(map(len, with_triggers)) > 20  # the limits are tight enough that many answers state numbers beyond
