"""Answers that ask the customer for what they must never share: a password, an SMS or payment code
("请把您收到的验证码发给我", "Please send me your verification code"). A warning not to share passes."""

from __future__ import annotations

import re

from kefu.guard.findings import Finding, clause_before
from kefu.guard.promises import Rule

_C = r"[^，。！？；,.!?;\n]"  # any character inside the same clause
_YOU = r"(?:您|你)"
_SECRET = r"(?:验证码|校验码|动态码|短信码|密码|支付密码|CVV|安全码|cvv)"
SECRET_RULES: tuple[Rule, ...] = (
    Rule(
        "zh.asks_secret",
        "zh",
        rf"(?:把|将)?{_YOU}?的?(?:收到的|手机上的|短信里的?)?{_SECRET}(?:发|告诉|提供|报|给|输入到这里|打出来)"
        rf"|(?:告诉|提供|发)(?:给)?我{_C}{{0,6}}?{_SECRET}"
        # "请客户发送短信验证码和登录密码" (an instruction a planted document got the model to repeat)
        rf"|(?:请|让|要求)(?:客户|用户|顾客|{_YOU})?(?:发送|提供|告知|提交|报出)(?:短信|手机|登录|支付)?{_SECRET}",
        unless="不要|勿|切勿|别|不会|不需要|绝不|谨防|不要向",
    ),
    Rule(
        "en.asks_secret",
        "en",
        r"\b(?:send|tell|give|share|provide|read out|type)\s+(?:me|us)\s+(?:your|the)\s+"
        r"(?:verification code|password|otp|one-time (?:code|password)|sms code|pin|cvv|security code)\b",
        unless=r"\b(?:never|don't|do not|won't|will not|not)\b",
    ),
)
_WORDS = re.compile(r"验证码|校验码|动态码|短信码|密码|安全码|cvv|code|password|otp|pin", re.I)
_SECRET_COMPILED = tuple((r, re.compile(r.pattern, re.I if r.lang == "en" else 0)) for r in SECRET_RULES)


def find_secret_requests(text: str) -> list[Finding]:
    """The answer asks the customer for a password or a one-time code (rule ids 'zh.asks_secret', 'en.asks_secret')."""
    found: list[Finding] = []
    if not _WORDS.search(text):  # every rule names the secret
        return found
    for rule, rx in _SECRET_COMPILED:
        for m in rx.finditer(text):
            if not re.search(rule.unless, clause_before(text, m.start(), 20), re.I):
                found.append(Finding(rule.id, m.start(), m.end(), m.group()))
    return found
