"""The persona as data: the system prompt, and identity (self-cognition) Q&A for training.

A small model forgets who it is unless taught: without identity data it answers "我是ChatGPT" or "I am Qwen".
`identity_conversations` writes varied zh and en questions about who the assistant is, who built it, what it can
and cannot do, hours and how to reach a human, with answers built only from PersonaConfig (no invented policy) and
following its style rules: greeting, sign-off, no emoji unless allowed, at most max_chars, no forbidden phrases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from kefu.config import PersonaConfig
from kefu.data.schema import Conversation, Turn

_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d]")
_MODELS = ("ChatGPT", "GPT-4", "GPT-4o", "Claude", "文心一言", "通义千问", "豆包", "Kimi", "DeepSeek", "Qwen")
_MODELS_EN = ("ChatGPT", "GPT-4", "GPT-4o", "Claude", "Gemini", "Llama", "Qwen", "DeepSeek")


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
    lines.append(f"{hours_zh(p)}转人工方式：{_sentence(p.handoff, 'zh')}")
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


# --------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class Action:
    """Something customers ask the assistant to do; the persona's can/cannot lists decide the answer.

    An item of can_do/cannot_do matches when it names one of the action's objects and, if the action has verbs,
    one of them too: "修改订单" must not answer "查一下订单" (same object, other verb)."""

    objects: tuple[str, ...]
    verbs: tuple[str, ...]
    zh: tuple[str, ...]
    en: tuple[str, ...]
    zh_name: str
    en_name: str


ACTIONS = (
    Action(("地址",), ("改", "更"), ("你能帮我改地址吗", "可以帮我修改收货地址吗", "地址填错了，你能帮我改一下吗"),
           ("can you change my address", "could you update my shipping address"), "修改收货地址",
           "change your shipping address"),
    Action(("退款", "赔偿", "补偿"), (), ("你能直接给我退款吗", "可以现在就帮我退款吗"),
           ("can you refund me right now", "can you give me a refund"), "直接退款", "issue a refund"),
    Action(("价格", "改价", "打折"), (), ("能给我改个价吗", "可以给我便宜点吗"),
           ("can you lower the price for me", "can you give me a discount"), "修改价格", "change the price"),
    Action(("送达", "到货"), ("保证", "承诺"), ("能保证明天送到吗", "你能保证我哪天到货吗"),
           ("can you guarantee delivery tomorrow", "can you promise when it arrives"), "保证送达日期",
           "guarantee a delivery date"),
    Action(("物流", "订单"), ("查",), ("你能帮我查物流吗", "可以帮我查一下订单吗"),
           ("can you track my order", "can you check my order status"), "查询订单和物流",
           "check your order and shipping status"),
)  # fmt: skip

QUESTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "who": {
        "zh": ("你是谁", "请问你是谁", "你是什么", "你是机器人吗", "你是真人吗", "介绍一下你自己", "你是干什么的"),
        "en": ("who are you", "what are you", "are you a bot", "are you a real person", "introduce yourself"),
    },
    "name": {
        "zh": ("你叫什么名字", "你叫什么", "怎么称呼你", "你的名字是什么", "你有名字吗"),
        "en": ("what's your name", "what is your name", "what should I call you", "do you have a name"),
    },
    "model": {
        "zh": ("你是{m}吗", "你是不是{m}", "你用的是{m}吗", "你背后是{m}吗"),
        "en": ("are you {m}", "is this {m}", "am I talking to {m}", "are you built on {m}"),
    },
    "maker": {
        "zh": ("你是哪家公司开发的", "谁开发了你", "你是谁做的", "你属于哪个公司", "你是哪个团队做的"),
        "en": ("who made you", "who created you", "which company built you", "who developed you"),
    },
    "abilities": {
        "zh": ("你能做什么", "你可以帮我做什么", "你有什么功能", "你能帮我什么忙"),
        "en": ("what can you do", "what can you help me with", "how can you help me"),
    },
    "handoff": {
        "zh": ("人工客服怎么联系", "怎么转人工", "我要找人工客服", "能不能找真人客服", "人工客服在哪"),
        "en": (
            "how do I reach a human",
            "can I talk to a real person",
            "I want a human agent",
            "how do I contact support",
        ),
    },
    "hours": {
        "zh": ("几点有人工", "人工客服什么时候上班", "你们客服几点下班", "晚上有人工客服吗", "客服工作时间是几点"),
        "en": ("when are human agents available", "what are your service hours", "is anyone there at night"),
    },
    "greet": {
        "zh": ("在吗", "有人吗", "你好，在不在", "客服在吗", "能问个问题吗"),
        "en": ("anyone there", "hello, are you there", "can I ask a question"),
    },
    "thanks": {
        "zh": ("谢谢", "好的谢谢", "明白了，谢谢你", "多谢"),
        "en": ("thanks", "thank you", "ok thanks"),
    },
}
_PREFIX = {"zh": ("", "", "你好，", "在吗？", "请问", "嗯，", "hi，"), "en": ("", "", "hi, ", "hello, ", "hey, ")}
_SUFFIX = {"zh": ("", "？", "?", "呀", "啊？"), "en": ("?", "?", "", " please?")}


# --------------------------------------------------------------------------- answers
_END = "。！？.!?；;"
_TIME_RANGE = re.compile(r"\d{1,2}:\d{2}\s*[-~–至到]\s*\d{1,2}:\d{2}")


def _sentence(text: str, lang: str) -> str:
    """`text` ending in a full stop, so sentences joined after it never run together."""
    text = text.strip()
    if not text or text[-1] in _END or (text[-1] in "”\"'）)」" and len(text) > 1 and text[-2] in _END):
        return text
    return text + ("。" if lang == "zh" else ".")


def hours_zh(p: PersonaConfig) -> str:
    """The hours as one sentence; `hours` written as a sentence ("人工客服每天…") is not prefixed again."""
    text = p.hours if any(w in p.hours for w in ("人工", "客服")) else f"人工客服时间：{p.hours}"
    return _sentence(text, "zh")


def hours_en(p: PersonaConfig) -> str:
    """The hours in English: hours_en, else only the clock times of `hours` (never its Chinese words)."""
    if p.hours_en:
        return _sentence(f"Human agents are available: {p.hours_en}", "en")
    ranges = _TIME_RANGE.findall(p.hours)
    if ranges:
        return f"Human agents are available {', '.join(ranges)} (China time)."
    return "Human agents are available during our service hours."


def handoff_sentence(p: PersonaConfig, lang: str) -> str:
    """How to reach a person, as one sentence in the customer's language."""
    return _handoff(p, lang)


def _handoff(p: PersonaConfig, lang: str) -> str:
    if lang == "zh":
        return f"如需人工服务，请{_sentence(p.handoff, 'zh')}"
    return _sentence(p.handoff_en or "To reach a human agent, just ask for one in this chat", "en")


def _company_en(p: PersonaConfig) -> str:
    return p.company_en or f"the team behind {p.shop_en}"


def _who(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [
            f"我是{p.shop}的智能客服{p.name}，是AI助手，不是真人，可以帮您解答购物中的问题。",
            f"我是{p.name}，{p.shop}的AI客服，由{p.company}开发，订单、物流、售后的问题都可以问我。",
            f"我是{p.shop}的在线智能客服{p.name}（英文名{p.name_en}），有问题可以直接问我。",
        ]
    return [
        f"I'm {p.name_en}, the AI customer-service assistant of {p.shop_en}. I'm not a human, but I can help "
        "with your shopping questions.",
        f"I'm {p.name_en}, an AI assistant for {p.shop_en}, made by {_company_en(p)}.",
    ]


def _name(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [
            f"我叫{p.name}，英文名是{p.name_en}，是{p.shop}的智能客服。",
            f"您可以叫我{p.name}，我是{p.shop}的AI客服。",
        ]
    return [
        f"My name is {p.name_en} ({p.name}), {p.shop_en}'s customer-service assistant.",
        f"Call me {p.name_en}. What can I help you with?",
    ]


def _model(p: PersonaConfig, lang: str, model: str) -> list[str]:
    if lang == "zh":
        return [
            f"不是的，我不是{model}。我是{p.shop}的智能客服{p.name}，由{p.company}开发。",
            f"我是{p.name}，{p.company}为{p.shop}开发的客服助手，不是{model}。",
        ]
    return [
        f"No, I'm not {model}. I'm {p.name_en}, the customer-service assistant of {p.shop_en}, made by "
        f"{_company_en(p)}.",
        f"No. I'm {p.name_en}, {p.shop_en}'s own AI assistant, not {model}.",
    ]


def _maker(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [
            f"我由{p.company}开发，是{p.shop}的智能客服{p.name}。",
            f"{p.company}开发了我，我是{p.shop}的客服助手{p.name}。",
        ]
    return [f"I was made by {_company_en(p)}. I'm {p.name_en}, the AI assistant of {p.shop_en}."]


def _abilities(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "en":
        return [f"I can answer questions about shopping at {p.shop_en}: orders, shipping, returns and policies."]
    can = "；".join(p.can_do) if p.can_do else f"解答{p.shop}购物相关的问题"
    return [f"我可以帮您：{can}。", f"我可以帮您：{can}。有问题直接告诉我就好。"]


def _handoff_answer(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [f"{_handoff(p, lang)}{hours_zh(p)}", f"需要人工的话，请{_sentence(p.handoff, lang)}{hours_zh(p)}"]
    return [f"{_handoff(p, lang)} {hours_en(p)}"]


def _hours_answer(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [f"{hours_zh(p)}{_handoff(p, lang)}", hours_zh(p)]
    return [f"{hours_en(p)} {_handoff(p, lang)}"]


def _greet(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [f"在的，我是{p.name}，请问有什么可以帮您？", "在的，请问遇到什么问题了？直接告诉我就好。"]
    return [f"Yes, I'm here. I'm {p.name_en}; what can I help you with?"]


def _thanks(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return ["不客气，能帮到您就好。", "不用谢，很高兴为您服务。"]
    return ["You're welcome, glad I could help."]


def _decide(p: PersonaConfig, action: Action) -> tuple[str, str | None]:
    """('cannot'|'can'|'unknown', matching list item): the item naming most of the action's words wins, and
    cannot_do wins a tie (refusing is the safe side of a doubt)."""
    best: tuple[int, str, str | None] = (0, "unknown", None)
    for verdict, items in (("cannot", p.cannot_do), ("can", p.can_do)):
        for item in items:
            objects = sum(o in item for o in action.objects)
            verbs = sum(v in item for v in action.verbs)
            if objects and (verbs or not action.verbs) and objects + verbs > best[0]:
                best = (objects + verbs, verdict, item)
    return best[1], best[2]


def action_answer(p: PersonaConfig, action: Action, lang: str) -> str:
    """The body of the answer to 'can you <action>?', decided by the persona's can/cannot lists."""
    verdict, item = _decide(p, action)
    if lang == "en":
        if verdict == "can":
            return f"Yes, I can help you {action.en_name}. Please tell me your order number."
        return f"Sorry, I can't {action.en_name} myself. {_handoff(p, lang)}"
    if verdict == "can":
        return f"可以的，我可以帮您{item}，请提供一下订单号。"
    if verdict == "cannot":
        return f"抱歉，我不能{item}。{_handoff(p, lang)}"
    return f"{action.zh_name}需要人工客服来处理。{_handoff(p, lang)}"


TopicAnswer = Callable[[PersonaConfig, str, str], list[str]]
_ANSWERS: dict[str, TopicAnswer] = {
    "who": _who,
    "name": _name,
    "model": _model,
    "maker": _maker,
    "abilities": _abilities,
    "handoff": _handoff_answer,
    "hours": _hours_answer,
    "greet": _greet,
    "thanks": _thanks,
}


# --------------------------------------------------------------------------- style and generation
def _sign_off(p: PersonaConfig, lang: str) -> str:
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
    sign = _sign_off(p, lang)
    body = _sentence(body, lang) if sign else body
    text = head + body + ((" " if lang == "en" else "") + sign if sign else "")
    if len(text) > p.max_chars:
        text = _fit(head + body, p.max_chars)
    return text if p.emoji else _EMOJI.sub("", text)


def _question(rng: random.Random, p: PersonaConfig, lang: str, topic: str) -> tuple[str, list[str]]:
    """A paraphrased question of a topic and the answer bodies that fit it."""
    if topic == "action":
        action = _balanced_action(rng, p)
        return rng.choice(action.zh if lang == "zh" else action.en), [action_answer(p, action, lang)]
    if topic == "item":
        verdict, items = rng.choice([("can", p.can_do), ("cannot", p.cannot_do)])
        item = rng.choice(items)
        body = f"可以的，我可以{item}。" if verdict == "can" else f"抱歉，我不能{item}。{_handoff(p, 'zh')}"
        return f"你可以{item}吗", [body]
    model = rng.choice(_MODELS if lang == "zh" else _MODELS_EN)
    return rng.choice(QUESTIONS[topic][lang]).format(m=model), _ANSWERS[topic](p, lang, model)


def _balanced_action(rng: random.Random, p: PersonaConfig) -> Action:
    """An action the persona can do as often as one it cannot: a set of mostly refusals taught a trained model
    to refuse ordinary questions."""
    can = [a for a in ACTIONS if _decide(p, a)[0] == "can"]
    other = [a for a in ACTIONS if a not in can]
    return rng.choice(rng.choice([g for g in (can, other) if g]))


def _dress(rng: random.Random, question: str, lang: str) -> str:
    """Vary how people actually type: greetings in front, question marks or particles at the end."""
    # "吗呀" reads wrong: a question that already ends in a particle only gets a question mark.
    suffixes = ("", "？", "?") if question.endswith(("吗", "呢")) else _SUFFIX[lang]
    question = rng.choice(_PREFIX[lang]) + question + rng.choice(suffixes)
    return question[0].upper() + question[1:] if lang == "en" and rng.random() < 0.5 else question


def _topics(p: PersonaConfig) -> list[tuple[str, str]]:
    zh = [*QUESTIONS, "action"] + (["item"] if p.can_do and p.cannot_do else [])
    en = [*QUESTIONS, "action"]
    # Chinese shoppers are the main audience: two Chinese questions for each English one.
    return [("zh", t) for t in zh] * 2 + [("en", t) for t in en]


def identity_conversations(persona: PersonaConfig, n: int, seed: int = 42) -> list[Conversation]:
    """n distinct identity Q&A conversations (zh and en), seeded; fewer only if the paraphrases run out."""
    rng = random.Random(seed)
    topics = _topics(persona)
    out: list[Conversation] = []
    seen: set[str] = set()
    for attempt in range(n * 50):
        if len(out) >= n:
            break
        if attempt % len(topics) == 0:
            rng.shuffle(topics)
        lang, topic = topics[attempt % len(topics)]
        question, bodies = _question(rng, persona, lang, topic)
        question = _dress(rng, question, lang)
        answer = styled(persona, rng.choice(bodies), lang)
        if question in seen or any(f.lower() in answer.lower() for f in persona.forbidden_phrases):
            continue
        seen.add(question)
        turns = [Turn(role="user", content=question), Turn(role="assistant", content=answer)]
        meta = {"source": "persona", "topic": "identity", "lang": lang, "kind": topic}
        out.append(Conversation(turns=turns, meta=meta))
    return out
