"""The persona's words: the system prompt training and serving share, and the style every answer written from the
persona follows (greeting, sign-off, emoji, length; hours and the way to a human as sentences).

Pure functions of PersonaConfig. kefu.data.persona writes identity Q&A with them and re-exports them: callers
import from there.
"""

from __future__ import annotations

import re

from kefu.config import PersonaConfig


def system_prompt(persona: PersonaConfig) -> str:
    """The zh system prompt used by training and serving: identity, can/cannot, hours, handoff and style rules."""
    if persona.system_prompt is not None:
        return persona.system_prompt
    p = persona
    lines = [
        f"你是{p.shop}的智能客服“{p.name}”（英文名 {p.name_en}），由{p.company}开发。"
        "你不是ChatGPT或其他通用AI助手；被问到身份时如实说明自己是AI客服。",
    ]
    if p.can_do:
        lines.append(f"你可以：{'；'.join(p.can_do)}。")
    if p.cannot_do:
        lines.append(f"你不能：{'；'.join(p.cannot_do)}。遇到这些请求要礼貌说明，并告诉客户如何转人工。")
    lines.append(f"{hours_zh(p)}转人工方式：{as_sentence(p.handoff, 'zh')}")
    lines.append("回答要求：" + "；".join(_style_rules(p)) + "。")
    return "\n".join(lines)


def no_match_note(persona: PersonaConfig) -> str:
    """What the model is told when the knowledge base has nothing relevant: check or hand off, never invent."""
    return (
        "知识库中没有找到与这个问题相关的店铺政策。不要编造政策、时限或金额；请告诉客户您会核实后回复，"
        f"或建议转人工客服（{persona.handoff}）。"
        " (No shop policy matches this question: do not invent one; say you will check, or offer a human agent.)"
    )


def system_text(base: str, context_text: str, persona: PersonaConfig, kb_searched: bool) -> str:
    """The system message: persona prompt, then the excerpts, or the no-match note when a search found nothing."""
    if context_text:
        return f"{base}\n\n{context_text}"
    return f"{base}\n\n{no_match_note(persona)}" if kb_searched else base


def _style_rules(p: PersonaConfig) -> list[str]:
    rules = []
    if p.greeting:
        rules.append(f"以“{p.greeting}”开头")
    if p.sign_off:
        rules.append(f"以“{p.sign_off}”结尾")
    if not p.emoji:
        rules.append("不使用表情符号")
    rules.append(f"每次回答不超过{p.max_chars}字")
    rules.append("只根据店铺政策和已知信息回答，不确定时不要编造，建议转人工")
    if p.forbidden_phrases:
        rules.append("不要使用这些说法：" + "、".join(f"“{x}”" for x in p.forbidden_phrases))
    rules.append("客户用英文提问时用英文回答")
    return rules


_PLACEHOLDER = PersonaConfig()
_MUST_FILL = ("name", "name_en", "shop", "shop_en", "company", "hours", "handoff")


def unfilled(p: PersonaConfig) -> list[str]:
    """Persona fields identity data cannot be written without: empty ones (a blank project's to-do list)."""
    return [f"persona.{name}" for name in _MUST_FILL if not str(getattr(p, name)).strip()]


def is_placeholder(p: PersonaConfig) -> bool:
    """Whether the persona is still kefu's built-in example (小客 of 示例小店), i.e. no real shop's."""
    return p.name == _PLACEHOLDER.name and p.shop == _PLACEHOLDER.shop


# --------------------------------------------------------------------------- sentences
_END = "。！？.!?；;"
_TIME_RANGE = re.compile(r"\d{1,2}:\d{2}\s*[-~–至到]\s*\d{1,2}:\d{2}")


def as_sentence(text: str, lang: str) -> str:
    """`text` ending in a full stop, so sentences joined after it never run together."""
    text = text.strip()
    if not text or text[-1] in _END or (text[-1] in "”\"'）)」" and len(text) > 1 and text[-2] in _END):
        return text
    return text + ("。" if lang == "zh" else ".")


def hours_zh(p: PersonaConfig) -> str:
    """The hours as one sentence; `hours` written as a sentence ("人工客服每天…") is not prefixed again."""
    text = p.hours if any(w in p.hours for w in ("人工", "客服")) else f"人工客服时间：{p.hours}"
    return as_sentence(text, "zh")


def hours_en(p: PersonaConfig) -> str:
    """The hours in English: hours_en, else only the clock times of `hours` (never its Chinese words)."""
    if p.hours_en:
        return as_sentence(f"Human agents are available: {p.hours_en}", "en")
    ranges = _TIME_RANGE.findall(p.hours)
    if ranges:
        return f"Human agents are available {', '.join(ranges)} (China time)."
    return "Human agents are available during our service hours."


def handoff_sentence(p: PersonaConfig, lang: str) -> str:
    """How to reach a person, as one sentence in the customer's language."""
    if lang == "zh":
        return f"如需人工服务，请{as_sentence(p.handoff, 'zh')}"
    return as_sentence(p.handoff_en or "To reach a human agent, just ask for one in this chat", "en")


# --------------------------------------------------------------------------- style
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]")


def sign_off(p: PersonaConfig, lang: str) -> str:
    """The persona's closing line in `lang` ('' when it has none; English: its own when ASCII)."""
    if not p.sign_off or lang == "zh":
        return p.sign_off
    return p.sign_off if p.sign_off.isascii() else "Feel free to ask me anything else."


def _fit(text: str, limit: int) -> str:
    """Cut at the last sentence end that fits, so a long can-do list never breaks max_chars."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(c) for c in "。；！？.;!?")
    return cut[: end + 1] if end > 0 else cut


def styled(p: PersonaConfig, body: str, lang: str) -> str:
    """Apply the persona's style: greeting, sign-off, emoji policy and the length limit."""
    greeting = p.greeting if lang == "zh" else ("Hello!" if p.greeting else "")
    sep = "" if not greeting or greeting[-1] in "，。！,.!" else ("，" if lang == "zh" else " ")
    head = f"{greeting}{sep}" + ("" if lang == "zh" or not greeting or sep else " ")
    sign = sign_off(p, lang)
    body = as_sentence(body, lang) if sign else body
    text = head + body + ((" " if lang == "en" else "") + sign if sign else "")
    if len(text) > p.max_chars:
        text = _fit(head + body, p.max_chars)
    return text if p.emoji else _EMOJI.sub("", text)
