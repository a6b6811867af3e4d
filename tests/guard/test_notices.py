"""Every notice comes from the persona, in the customer's language, without doubled labels or spliced Chinese."""

from __future__ import annotations

import re

import pytest

from kefu.config import KefuConfig, PersonaConfig
from kefu.guard.lang import detect_lang
from kefu.guard.notices import NOTICE_KINDS, notice

HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("I want to talk to a human agent please", "en"),
        ("where is my order?", "en"),
        ("我的订单什么时候到？", "zh"),
        ("转人工 please", "zh"),
        ("订单 DD20261106001 到哪了", "zh"),
        ("Reply 转人工 to reach a human agent", "en"),
        ("", "zh"),
        ("123456", "zh"),
        ("ｗｈｅｒｅ ｉｓ ｍｙ ｏｒｄｅｒ", "en"),
    ],
)
def test_detect_lang(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


def test_sample_shop_notices_zh_and_en(shop_cfg: KefuConfig) -> None:
    p = shop_cfg.persona
    zh = notice(p, "handoff", "zh")
    assert (
        zh
        == "您好，已为您转接人工客服，请稍候。人工在线客服每天 9:00-22:00；客服热线 400-820-6688（工作日 9:00-18:00）。"
    )
    assert "人工客服时间：人工" not in zh
    en = notice(p, "handoff", "en")
    assert p.hours_en in en and p.hours not in en and en.startswith("Hello, I'm transferring you to a human agent")
    refusal = notice(p, "refusal", "en")
    assert "Qinghe Living" in refusal and p.handoff_en.rstrip(".") in refusal
    assert "青禾" not in refusal
    for kind in NOTICE_KINDS:
        assert notice(p, kind, "zh").endswith("。") and HAN.search(notice(p, kind, "zh"))
        assert notice(p, kind, "en").endswith(".")


def test_english_without_english_fields_never_splices_chinese() -> None:
    p = PersonaConfig(shop="小店", shop_en="Little Shop", hours="人工客服每天9点到18点", handoff="回复“人工”")
    for kind in NOTICE_KINDS:
        en = notice(p, kind, "en")
        assert not HAN.search(en), en
        assert "  " not in en and ".." not in en
    assert "human agent" in notice(p, "handoff", "en")


def test_hours_as_a_sentence_or_a_value() -> None:
    value = PersonaConfig(hours="每天 9:00-21:00")
    assert notice(value, "handoff", "zh").endswith("人工客服时间：每天 9:00-21:00。")
    sentence = PersonaConfig(hours="人工客服每天 9:00-21:00 在线。")
    assert notice(sentence, "handoff", "zh").endswith("请稍候。人工客服每天 9:00-21:00 在线。")
    en = PersonaConfig(hours_en="9am-9pm daily")
    assert notice(en, "handoff", "en").endswith("Human agent hours: 9am-9pm daily.")


def test_handoff_field_starting_with_please_is_not_doubled() -> None:
    p = PersonaConfig(handoff="请回复“人工”。")
    assert "请请" not in notice(p, "refusal", "zh") and "。。" not in notice(p, "refusal", "zh")


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected one of handoff"):
        notice(PersonaConfig(), "oops", "zh")  # type: ignore[arg-type]
