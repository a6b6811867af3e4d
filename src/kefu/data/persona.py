"""The persona as data: identity (self-cognition) Q&A for training, and (re-exported from kefu.data.persona_prompt)
the system prompt and the persona's style.

A small model forgets who it is unless taught: without identity data it answers "我是ChatGPT" or "I am Qwen".
`identity_conversations` writes varied zh and en questions about who the assistant is, who built it, what it can
and cannot do, hours and how to reach a human, with answers built only from PersonaConfig (no invented policy) and
following its style rules: greeting, sign-off, no emoji unless allowed, at most max_chars, no forbidden phrases.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from kefu.config import PersonaConfig
from kefu.data.persona_prompt import (
    as_sentence,
    handoff_sentence,
    hours_en,
    hours_zh,
    is_placeholder,
    no_match_note,
    styled,
    system_prompt,
    system_text,
    unfilled,
)
from kefu.data.schema import Conversation, Turn

# Callers import the prompt and style functions from here too (kefu.data.persona is the persona's public face).
__all__ = [
    "ACTIONS",
    "QUESTIONS",
    "Action",
    "TopicAnswer",
    "action_answer",
    "handoff_sentence",
    "hours_en",
    "hours_zh",
    "identity_conversations",
    "is_placeholder",
    "no_match_note",
    "styled",
    "system_prompt",
    "system_text",
    "unfilled",
]

# --------------------------------------------------------------------------- questions
_MODELS = ("ChatGPT", "GPT-4", "GPT-4o", "Claude", "文心一言", "通义千问", "豆包", "Kimi", "DeepSeek", "Qwen")
_MODELS_EN = ("ChatGPT", "GPT-4", "GPT-4o", "Claude", "Gemini", "Llama", "Qwen", "DeepSeek")


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
        "zh": ("你是谁", "请问你是谁", "你是什么", "介绍一下你自己", "你是干什么的"),
        "en": ("who are you", "what are you", "introduce yourself"),
    },
    # Someone who asks whether a person is answering often wants one: the answer says who answers and how to get one.
    "human": {
        "zh": ("你是机器人吗", "你是真人吗", "是人工还是机器", "你是AI吗", "回我消息的是真人还是程序"),
        "en": ("are you a bot", "are you a real person", "am I talking to a human", "is this a bot or a person"),
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


def _human(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [
            f"我不是真人，是{p.shop}的智能客服{p.name}。需要真人服务的话，{as_sentence(p.handoff, lang)}",
            f"我是AI客服{p.name}，不是真人。{handoff_sentence(p, lang)}",
        ]
    return [f"No, I'm {p.name_en}, {p.shop_en}'s AI assistant, not a person. {handoff_sentence(p, lang)}"]


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
        return [
            f"{handoff_sentence(p, lang)}{hours_zh(p)}",
            f"需要人工的话，请{as_sentence(p.handoff, lang)}{hours_zh(p)}",
        ]
    return [f"{handoff_sentence(p, lang)} {hours_en(p)}"]


def _hours_answer(p: PersonaConfig, lang: str, _: str) -> list[str]:
    if lang == "zh":
        return [f"{hours_zh(p)}{handoff_sentence(p, lang)}", hours_zh(p)]
    return [f"{hours_en(p)} {handoff_sentence(p, lang)}"]


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
        return f"Sorry, I can't {action.en_name} myself. {handoff_sentence(p, lang)}"
    if verdict == "can":
        return f"可以的，我可以帮您{item}，请提供一下订单号。"
    if verdict == "cannot":
        return f"抱歉，我不能{item}。{handoff_sentence(p, lang)}"
    return f"{action.zh_name}需要人工客服来处理。{handoff_sentence(p, lang)}"


TopicAnswer = Callable[[PersonaConfig, str, str], list[str]]
_ANSWERS: dict[str, TopicAnswer] = {
    "who": _who,
    "human": _human,
    "name": _name,
    "model": _model,
    "maker": _maker,
    "abilities": _abilities,
    "handoff": _handoff_answer,
    "hours": _hours_answer,
    "greet": _greet,
    "thanks": _thanks,
}


# --------------------------------------------------------------------------- generation
def _question(rng: random.Random, p: PersonaConfig, lang: str, topic: str) -> tuple[str, list[str]]:
    """A paraphrased question of a topic and the answer bodies that fit it."""
    if topic == "action":
        action = _balanced_action(rng, p)
        return rng.choice(action.zh if lang == "zh" else action.en), [action_answer(p, action, lang)]
    if topic == "item":
        verdict, items = rng.choice([("can", p.can_do), ("cannot", p.cannot_do)])
        item = rng.choice(items)
        body = f"可以的，我可以{item}。" if verdict == "can" else f"抱歉，我不能{item}。{handoff_sentence(p, 'zh')}"
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
