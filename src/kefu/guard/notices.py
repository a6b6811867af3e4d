"""Every fixed text a customer can receive, built from the persona in the customer's language.

English notices use `hours_en`/`handoff_en`; when those are empty they fall back to English sentences that never
splice Chinese persona text into English. Persona fields may be bare values ("每天 9:00-21:00") or whole sentences
("人工在线客服每天 9:00-22:00"): a field that already says what it is gets no label in front of it.
"""

from __future__ import annotations

import re
from typing import Literal

from kefu.config import PersonaConfig

NoticeKind = Literal["handoff", "with_agent", "refusal", "no_match", "busy", "error"]
NOTICE_KINDS: tuple[NoticeKind, ...] = ("handoff", "with_agent", "refusal", "no_match", "busy", "error")

_HAN = re.compile(r"[\u3400-\u9fff]")
_END_PUNCT = "。．.！!？?；;，, \n\t"
# A field that names its own subject ("人工在线客服每天…", "Live chat 9:00-22:00…") needs no "人工客服时间：" label.
_SAYS_WHO_ZH = re.compile(r"人工|客服|服务|热线|在线|电话")
_SAYS_WHO_EN = re.compile(r"\b(?:agents?|chat|hotline|support|service|staff|team|phone)\b", re.I)


def _bare(text: str) -> str:
    return text.strip().rstrip(_END_PUNCT)


def _sentence_en(text: str) -> str:
    body = _bare(text)
    return body[:1].upper() + body[1:] + "." if body else ""


def greeting(p: PersonaConfig, lang: str) -> str:
    """The opening word(s) with their comma, or '' when the persona has none (English: the persona's when ASCII)."""
    if lang == "en":
        g = _bare(p.greeting) if p.greeting.isascii() and p.greeting.strip() else "Hello"
        return f"{g}, "
    g = _bare(p.greeting)
    return f"{g}，" if g else ""


# Common words of Chinese service hours, so "每天 9:00-21:00" can be said in English without hours_en.
_HOURS_WORDS = (
    ("法定节假日", "public holidays"),
    ("节假日", "public holidays"),
    ("工作日", "weekdays"),
    ("每天", "every day"),
    ("每日", "every day"),
    ("周末", "weekends"),
    ("全天", "all day"),
    ("至", " to "),
    ("到", " to "),
    ("，", ", "),
    ("；", "; "),
    ("、", ", "),
    ("（", " ("),
    ("）", ")"),
    ("：", ": "),
    ("除外", " excepted"),
    ("休息", " closed"),
)
_WEEKDAYS = dict(
    zip(
        "一二三四五六日天",
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "Sunday"),
        strict=True,
    )
)


def _hours_en_from_zh(hours: str) -> str:
    """Chinese service hours in English when they use only common words, else '' (never half-translated)."""
    text = re.sub(r"(?:周|星期)([一二三四五六日天])", lambda m: _WEEKDAYS[m.group(1)], hours)
    for zh, en in _HOURS_WORDS:
        text = text.replace(zh, en)
    text = re.sub(r"\s+", " ", text).strip()
    return "" if _HAN.search(text) else text


def hours_sentence(p: PersonaConfig, lang: str) -> str:
    """When human agents work, as one sentence."""
    if lang == "en":
        hours = p.hours_en or _hours_en_from_zh(p.hours)
        if not _bare(hours):
            return "Human agents are available during the shop's service hours."
        return _sentence_en(hours) if _SAYS_WHO_EN.search(hours) else f"Human agent hours: {_bare(hours)}."
    hours = _bare(p.hours)
    if not hours:
        return ""
    return f"{hours}。" if _SAYS_WHO_ZH.search(hours) else f"人工客服时间：{hours}。"


def handoff_sentence(p: PersonaConfig, lang: str) -> str:
    """How to reach a human agent, as one sentence."""
    if lang == "en":
        if _bare(p.handoff_en):
            return _sentence_en(p.handoff_en)
        return 'To reach a human agent, reply "human agent" in this chat.'
    how = _bare(p.handoff).removeprefix("请")
    return f"如需人工服务，请{how}。" if how else "如需人工服务，请在对话中回复“转人工”。"


def _shop(p: PersonaConfig, lang: str) -> str:
    if lang == "en":
        return f"{p.shop_en}'s" if p.shop_en.strip() else "our shop's"
    return p.shop


def notice(persona: PersonaConfig, kind: NoticeKind, lang: str) -> str:
    """The notice of `kind` for a customer writing in `lang` ('zh' or 'en'; anything else reads as 'zh')."""
    p, en = persona, lang == "en"
    hi, how = greeting(p, "en" if en else "zh"), handoff_sentence(p, "en" if en else "zh")
    if kind == "handoff":
        first = "I'm transferring you to a human agent; please wait a moment." if en else "已为您转接人工客服，请稍候。"
        return " ".join((hi + first, hours_sentence(p, "en"))) if en else hi + first + hours_sentence(p, "zh")
    if kind == "with_agent":
        if en:
            return "A human agent is handling this conversation and will reply to you shortly."
        return "您的对话已由人工客服接手，请稍候，客服会尽快回复您。"
    bodies = {
        "refusal": (
            f"抱歉，我只能回答与{_shop(p, 'zh')}商品和服务相关的问题。",
            f"Sorry, I can only help with questions about {_shop(p, 'en')} products and services.",
        ),
        "no_match": (
            "抱歉，这个问题我暂时没有查到准确的信息，不想给您错误的答复。",
            "Sorry, I couldn't find reliable information on this, and I don't want to give you a wrong answer.",
        ),
        "busy": (
            "当前咨询人数较多，请稍后再试。",
            "Sorry, we're handling many requests right now; please try again shortly.",
        ),
        "error": (
            "抱歉，系统暂时出了点问题，请稍后再试。",
            "Sorry, something went wrong on our side; please try again shortly.",
        ),
    }
    if kind not in bodies:
        raise ValueError(f"notice kind {kind!r}: expected one of {', '.join(NOTICE_KINDS)}")
    zh, english = bodies[kind]
    return f"{english} {how}" if en else f"{hi}{zh}{how}"  # "Hello, Sorry, ..." reads badly: English opens with Sorry


def confirm_question(persona: PersonaConfig, what_zh: str, what_en: str, lang: str) -> str:
    """The persona asks the customer to confirm a write (`what`: e.g. 取消订单 DD… / cancel order DD…) in a
    separate turn; nothing has been done yet."""
    if lang == "en":
        return (f"{greeting(persona, 'en')}I can {_bare(what_en)} for you. Reply \"yes\" to confirm; any other "
                "reply cancels it and nothing is changed.")  # fmt: skip
    ask = "确认办理请回复“确认”，回复其他内容则不办理，订单不会有任何改动。"
    return f"{greeting(persona, 'zh')}将为您{_bare(what_zh)}。{ask}"


def declined(persona: PersonaConfig, what_zh: str, what_en: str, lang: str) -> str:
    """A pending write the customer did not confirm: it was not done."""
    if lang == "en":
        return f"{greeting(persona, 'en')}as you asked, I did not {_bare(what_en)}; nothing was changed."
    return f"{greeting(persona, 'zh')}好的，没有为您{_bare(what_zh)}，订单没有任何改动。"
