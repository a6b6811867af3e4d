"""Banned words: width/case-insensitive, evasion by inserted spaces, whole English words, offsets into the original."""

from __future__ import annotations

from kefu.guard.words import contains_banned, find_banned, redact_banned

WORDS = ["傻逼", "ChatGPT", "亲亲", "ass", "随便退"]


def test_full_width_and_case_are_normalised() -> None:
    text = "我是ＣｈａｔＧＰＴ，亲亲"
    found = find_banned(text, WORDS)
    assert [(f.text, f.detail) for f in found] == [("ＣｈａｔＧＰＴ", "chatgpt"), ("亲亲", "亲亲")]
    assert redact_banned(text, WORDS) == "我是*******，**"


def test_spaced_or_starred_chinese_words_are_caught() -> None:
    for text in ("你个傻 逼", "你个傻*逼", "你个傻\u200b逼"):
        assert contains_banned(text, WORDS), text
    assert redact_banned("30天随 便 退哦", WORDS) == "30天*****哦"


def test_english_words_match_whole_words_only() -> None:
    assert not contains_banned("first class service, assess it", WORDS)
    assert redact_banned("kiss my ASS!", WORDS) == "kiss my ***!"
    assert contains_banned("I am ChatGPT4", WORDS)  # a version number does not hide the name


def test_no_words_or_no_hits() -> None:
    assert find_banned("亲爱的顾客您好", WORDS) == []
    assert find_banned("anything", []) == [] and find_banned("anything", ["  "]) == []
    assert redact_banned("不变", WORDS, mask_char="#") == "不变"
