"""Identity: an answer must not claim to be another assistant or to come from another maker.

"我是ChatGPT", "I am Qwen, created by Alibaba Cloud", "我是一个由OpenAI训练的大型语言模型" fire; the persona's
own denial ("不是的，我不是ChatGPT。我是小禾") and its own name, shop and company do not.
"""

from __future__ import annotations

import re

from kefu.config import PersonaConfig
from kefu.guard.findings import Finding, clause_before

# Names of other assistants and their makers: any non-negated mention in an answer claims an identity.
_OTHER_ASSISTANTS = (
    r"chat\s?gpt|gpt-?[345](?:\.5)?o?|openai|通义千问|通义|千问|qwen|claude|anthropic|文心一言|文心|ernie\s?bot"
    r"|deepseek|深度求索|chatglm|智谱|kimi|月之暗面|gemini|llama|阿里云|alibaba\s+cloud|百川|baichuan|豆包|doubao"
    r"|讯飞星火|混元|hunyuan|mistral|copilot"
)
# Companies a shop answer may name for other reasons (a payment app, a map): only a first-person claim fires.
_MAKERS = (
    r"阿里巴巴|alibaba|百度|baidu|google|谷歌|meta|microsoft|微软|字节跳动|bytedance|腾讯|tencent|科大讯飞|iflytek"
)
_SELF = (
    r"(?:我|本助手|作为一?个?ai|(?<![a-z])as an? (?:ai|assistant|language model)(?![a-z])"
    r"|(?<![a-z])(?:i|my|me)(?![a-z]))"
)
_NEG = re.compile(r"不是|并非|不属于|无关|\bnot\b|n't\b|\bno\b|\bnever\b|\bunlike\b", re.I)
# "I am an AI developed by X", "我是由X开发的": a maker other than the persona's company (blanked out before).
_MAKER_CLAIM = re.compile(
    rf"{_SELF}[^，。！？!?\n]{{0,20}}?由(?P<zh>[^，。！？,.;；\n]{{1,30}}?)(?:开发|研发|训练|打造|创建|制作|推出)"
    rf"|{_SELF}[^.!?\n]{{0,40}}?(?:developed|created|made|built|trained|designed|powered)\s+(?:by|from|at)\s+"
    r"(?P<en>[^,.;!?\n]{1,40})",
)


_NAMES = re.compile(rf"(?<![a-z])(?:{_OTHER_ASSISTANTS})(?![a-z])|(?<![a-z])(?:{_MAKERS})(?![a-z])")
_MAKER_ONLY = re.compile(_MAKERS)
_SELF_RX = re.compile(_SELF)


def own_names(persona: PersonaConfig) -> tuple[str, ...]:
    """The persona's own names, shop and company, casefolded, longest first (they never count as another identity)."""
    names = (persona.name, persona.name_en, persona.shop, persona.shop_en, persona.company)
    return tuple(sorted({n.strip().casefold() for n in names if n.strip()}, key=len, reverse=True))


def _blank_own(text: str, own: tuple[str, ...]) -> str:
    """The casefolded text with the persona's own names replaced by same-length blanks (offsets stay valid)."""
    low = text.casefold()
    if len(low) != len(text):  # casefold changed a length (ß): fall back to lower(), which keeps it
        low = text.lower()
    for name in own:
        low = low.replace(name, "_" * len(name))
    return low


def find_identity(text: str, own: tuple[str, ...]) -> list[Finding]:
    """Claims of an identity other than the persona's (rule 'identity'); `own` from own_names(persona)."""
    low = _blank_own(text, own)
    found = []
    for m in _NAMES.finditer(low):
        before = clause_before(low, m.start(), 20)
        if _NEG.search(before):
            continue
        if _MAKER_ONLY.fullmatch(m.group()) and not _SELF_RX.search(before):
            continue
        found.append(Finding("identity", m.start(), m.end(), text[m.start() : m.end()]))
    for m in _MAKER_CLAIM.finditer(low):
        maker = (m.group("zh") or m.group("en") or "").strip()
        if maker and "_" not in maker and not _NEG.search(low[m.start() : m.end()]) and not found:
            found.append(Finding("identity", m.start(), m.end(), text[m.start() : m.end()], detail=f"maker {maker}"))
    return found
