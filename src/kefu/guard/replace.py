"""What a customer gets instead of a violating sentence: whole sentences in their language stating the shop's actual
policy (an excerpt sentence that holds the fact, else the number from guard.policy_limits), what the assistant cannot
do (persona.cannot_do), who it is, or how to reach a human."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kefu.config import PersonaConfig
from kefu.guard.lang import detect_lang
from kefu.guard.notices import handoff_sentence, notice
from kefu.guard.promises import check_limits, find_promises, states_limit

_LIMIT_SENTENCES = {
    "return_days": ("本店支持{n}天无理由退货。", "Returns for any reason are accepted within {n} days."),
    "quality_return_days": (
        "商品有质量问题的，可在{n}天内申请退换货。",
        "Items with a quality problem can be returned or exchanged within {n} days.",
    ),
    "exchange_days": ("本店支持{n}天内换货。", "Exchanges are accepted within {n} days."),
    "price_protection_days": ("本店价格保护期为{n}天。", "Price protection lasts {n} days."),
    "warranty_days": ("商品保修期为{n}天。", "The warranty lasts {n} days."),
    "ship_hours": ("订单一般在付款后{n}小时内发货。", "Orders usually ship within {n} hours of payment."),
    "refund_days": (
        "退款一般在{n}天内原路退回。",
        "Refunds usually reach your original payment method within {n} days.",
    ),
}
# promise rule id -> (what it is about, words that find the matching persona.cannot_do item, zh and en fallbacks)
_CANNOT = {
    "action": (("价格", "改价", "补偿"), "修改价格或发放补偿", "change prices or issue refunds or compensation myself"),
    "delivery": (("送达", "到货", "日期"), "保证具体送达日期", "guarantee a specific delivery date"),
    "outcome": (
        ("退款", "赔偿", "政策以外"),
        "承诺政策以外的退款或赔偿",
        "promise refunds or compensation beyond the shop's policy",
    ),
}
_ACTION_RULES = re.compile(r"done_claim|immediate_action|compensation")
_DELIVERY_RULES = re.compile(r"delivery|date_promise")
_SENTENCE = re.compile(r"[^。！？!?\n]+(?:[。！？!?]|\.(?=\s|$))?")


@dataclass(frozen=True)
class Violation:
    """hit: the guard's name ('limit', 'promise', 'identity', ...); rule: the rule id; detail: what it saw."""

    hit: str
    rule: str
    detail: str = ""


def _num(n: float) -> str:
    return f"{n:g}"


def limit_sentence(key: str, limit: float, lang: str, excerpts: Sequence[str], limits: dict[str, float]) -> str:
    """The shop's rule for `key`: a sentence of a retrieved excerpt that states it, else the configured number."""
    for excerpt in excerpts:
        for m in _SENTENCE.finditer(excerpt):
            s = m.group().strip()
            fits = 0 < len(s) <= 160 and detect_lang(s) == lang and states_limit(s, key, limit)
            if fits and not check_limits(s, limits) and not find_promises(s):
                return s if s[-1] in "。！？!?." else s + ("." if lang == "en" else "。")
    zh, en = _LIMIT_SENTENCES[key]
    return (en if lang == "en" else zh).format(n=_num(limit))


def _cannot_sentence(persona: PersonaConfig, topic: str, lang: str) -> str:
    words, zh_default, en_text = _CANNOT[topic]
    if lang == "en":
        return f"Sorry, I can't {en_text}."
    item = next((c for c in persona.cannot_do if any(w in c for w in words)), zh_default)
    return f"抱歉，我不能{item.rstrip('。.')}。"


def _topic(rule: str) -> str:
    if _ACTION_RULES.search(rule):
        return "action"
    return "delivery" if _DELIVERY_RULES.search(rule) else "outcome"


def identity_sentence(p: PersonaConfig, lang: str) -> str:
    if lang == "en":
        maker = f", made by {p.company}" if p.company.isascii() and p.company.strip() else ""
        return f"I'm {p.name_en}, the customer-service assistant of {p.shop_en}{maker}."
    return f"我是{p.shop}的智能客服{p.name}，由{p.company}开发。"


def replacement(
    persona: PersonaConfig,
    violations: Sequence[Violation],
    lang: str,
    excerpts: Sequence[str],
    limits: dict[str, float],
) -> str:
    """Whole sentences replacing a violating one and all that would have followed it."""
    hits = {v.hit for v in violations}
    if "system_prompt" in hits:
        return notice(persona, "refusal", lang)
    parts: list[str] = []
    if "identity" in hits:
        parts.append(identity_sentence(persona, lang))
    for v in violations:
        if v.hit == "limit":
            key = v.rule.removeprefix("limit.")
            parts.append(limit_sentence(key, limits[key], lang, excerpts, limits))
    for v in violations:
        if v.hit == "promise":
            parts.append(_cannot_sentence(persona, _topic(v.rule), lang))
            if _topic(v.rule) == "delivery" and "ship_hours" in limits:
                parts.append(limit_sentence("ship_hours", limits["ship_hours"], lang, excerpts, limits))
    if not parts or hits & {"promise", "banned_word", "forbidden_phrase"}:
        parts.append(handoff_sentence(persona, lang))
    return (" " if lang == "en" else "").join(dict.fromkeys(parts))
