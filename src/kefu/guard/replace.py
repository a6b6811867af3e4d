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
from kefu.rag.facts import cite, statement

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
_DELIVERY_WORDS = re.compile(r"到货|送达|送到|寄到|到达|明天到|\b(?:arriv\w*|deliver\w*|get to you|reach you)\b", re.I)
_SECRET_SENTENCE = (
    "为了您的账户安全，请不要向任何人（包括客服）提供密码或验证码。",
    "For your account's safety, never share your password or verification codes with anyone, including us.",
)
_ACTION_RULES = re.compile(r"done_claim|immediate_action|compensation")
_DELIVERY_RULES = re.compile(r"delivery|date_promise")
_LABEL = re.compile(r"^[^：:。.!?！？]{1,12}[：:]\s*")
_SENTENCE = re.compile(r"[^。！？!?\n]+(?:[。！？!?]|\.(?=\s|$))?")
# An answer saying the excerpts do not answer the question (what kefu's synthesised data teaches for a missing
# excerpt, and what a model overtrained on it says with the answer in front of it).
_UNANSWERED = re.compile(
    r"(?:参考)?(?:资料|excerpts)\s*(?:里|中)?(?:没有|未)(?:找到|提到|说明|写)|"
    r"\b(?:reference\s+)?excerpts?\s+(?:don't|do\s+not|doesn't|does\s+not)\s+(?:answer|say|cover|mention)\b",
    re.I,
)
CLOSEST_CHARS = 200  # the quoted policy: enough for a rule and its conditions, short enough to read in a chat
_CLOSEST_LEAD = (
    "这个问题我没法确定，最相关的店铺规定是：",
    "I can't answer that for certain; the closest shop policy says: ",
)


@dataclass(frozen=True)
class Violation:
    """hit: the guard's name ('limit', 'promise', 'identity', ...); rule: the rule id; detail: what it saw."""

    hit: str
    rule: str
    detail: str = ""
    sentence: str = ""  # the sentence it was found in


def _num(n: float) -> str:
    return f"{n:g}"


def limit_sentence(key: str, limit: float, lang: str, excerpts: Sequence[str], limits: dict[str, float]) -> str:
    """The shop's rule for `key`: a sentence of a retrieved excerpt that states it, else the configured number."""
    for excerpt in excerpts:
        for m in _SENTENCE.finditer(excerpt):
            s = _LABEL.sub("", m.group().strip())  # "退换货：…" -> "…": the heading is not a sentence
            fits = 0 < len(s) <= 160 and detect_lang(s) == lang and states_limit(s, key, limit)
            if fits and not check_limits(s, limits) and not find_promises(s):
                s = s[:1].upper() + s[1:] if lang == "en" else s
                return s if s[-1] in "。！？!?." else s + ("." if lang == "en" else "。")
    zh, en = _LIMIT_SENTENCES[key]
    return (en if lang == "en" else zh).format(n=_num(limit))


def says_unanswered(sentence: str) -> bool:
    """Whether a sentence of an answer says the reference excerpts do not answer the question."""
    return _UNANSWERED.search(sentence) is not None


def closest_policy(excerpts: Sequence[str], lang: str, limits: dict[str, float]) -> str:
    """The first shown excerpt in the customer's language, its sentences quoted and cited by its number, behind a
    lead that says it may not be the answer; '' when no excerpt is in that language (no Chinese quoted in English)."""
    for n, excerpt in enumerate(excerpts, 1):
        quoted: list[str] = []
        for m in _SENTENCE.finditer(excerpt):
            sent = statement(m.group())  # as kefu's synthesised answers state an excerpt's sentences
            fits = sent and detect_lang(sent) == lang and not check_limits(sent, limits) and not find_promises(sent)
            if fits and sum(map(len, quoted)) + len(sent) <= CLOSEST_CHARS:
                quoted.append(sent)
        if quoted:
            return _CLOSEST_LEAD[lang == "en"] + cite((" " if lang == "en" else "").join(quoted), n)
    return ""


def _cannot_sentence(persona: PersonaConfig, topic: str, lang: str) -> str:
    words, zh_default, en_text = _CANNOT[topic]
    if lang == "en":
        return f"Sorry, I can't {en_text}."
    item = next((c for c in persona.cannot_do if any(w in c for w in words)), zh_default)
    return f"抱歉，我不能{item.rstrip('。.')}。"


def _topic(v: Violation) -> str:
    """What a promise was about: an action taken, a delivery date, or an outcome (refund, quality...)."""
    if _ACTION_RULES.search(v.rule):
        return "action"
    if _DELIVERY_RULES.search(v.rule) or _DELIVERY_WORDS.search(v.sentence):
        return "delivery"
    return "outcome"


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
    if "secret_request" in hits:
        parts.append(_SECRET_SENTENCE[1] if lang == "en" else _SECRET_SENTENCE[0])
    if "identity" in hits:
        parts.append(identity_sentence(persona, lang))
    if "unanswered" in hits:
        parts.append(closest_policy(excerpts, lang, limits))
    for v in violations:
        if v.hit == "limit":
            key = v.rule.removeprefix("limit.")
            parts.append(limit_sentence(key, limits[key], lang, excerpts, limits))
    for v in violations:
        if v.hit == "promise":
            parts.append(_cannot_sentence(persona, _topic(v), lang))
            if _topic(v) == "delivery" and "ship_hours" in limits:
                parts.append(limit_sentence("ship_hours", limits["ship_hours"], lang, excerpts, limits))
    if not parts or hits & {"promise", "banned_word", "forbidden_phrase", "unanswered"}:
        parts.append(handoff_sentence(persona, lang))
    return (" " if lang == "en" else "").join(dict.fromkeys(parts))
