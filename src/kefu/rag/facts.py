"""Policy statements out of knowledge-base chunks, and the customer questions each one answers.

Deterministic: a fact is a sentence of a chunk that states a rule (a number, or a can/cannot/who-pays word);
questions come from templates over the chunk's heading and the fact's numbers, in the ways customers ask:
plainly, colloquially, with a typo (a common homophone), indirectly (a day past a time limit, an hour past a
cut-off) and as a bait that asks for more than the rule gives. English chunks get English questions; Chinese chunks
get Chinese ones (translating needs a teacher model: kefu.rag.synth).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kefu.rag.chunk import Chunk, split_sentences

_CJK = re.compile(r"[\u3400-\u9fff]")
_END = re.compile(r"([。！？.!?])$")
_MARKUP = re.compile(r"^\s*(?:[-*+]|\d+[.)、]|[一二三四五六七八九十]+、)\s*|\*\*|__|`")
_HEADING_NUMBER = re.compile(r"^\s*(?:[一二三四五六七八九十]+、|\d+[.)、]\s*)")
_RULE_ZH = re.compile(r"\d|可以|可申请|不支持|不能|不可|不接受|承担|包邮|免费|需|只能|限")
_RULE_EN = re.compile(r"\d|\b(?:can|cannot|can't|free|pay|pays|within|only|must|not)\b", re.IGNORECASE)
NUMBER = re.compile(r"\d+(?:[.:]\d+)?")
_DURATION = re.compile(r"(\d+)\s*(个工作日|天|小时|个月|年|分钟|business days|days|hours|months|years)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")
_CUTOFF = re.compile(r"之前|前付款|before", re.IGNORECASE)
# Homophone slips people make when typing pinyin (退款 -> 退宽); one per question at most.
_TYPOS = {"款": "宽", "运": "云", "货": "或", "码": "马", "邮": "油", "账": "帐", "验": "严", "换": "还"}


@dataclass(frozen=True)
class Fact:
    """One rule-stating sentence and the chunk it came from."""

    text: str
    chunk: Chunk
    lang: str

    @property
    def topic(self) -> str:
        """What the rule is about: the chunk's innermost heading without its numbering."""
        head = self.chunk.heading[-1] if self.chunk.heading else ""
        return _HEADING_NUMBER.sub("", head).strip() or self.text[:12]


@dataclass(frozen=True)
class Question:
    text: str
    kind: str  # plain | colloquial | typo | indirect | bait


def lang_of(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


def cite(text: str, n: int) -> str:
    """Put the excerpt number before the sentence's final stop: '…照片[1]。'."""
    return _END.sub(rf"[{n}]\1", text) if _END.search(text) else f"{text}[{n}]"


def statement(raw: str) -> str:
    """A document sentence as an answer states it: list markers and emphasis off, ending with a full stop."""
    text = _MARKUP.sub("", raw.strip()).strip().rstrip("；;，,：:")
    return text if not text or text[-1] in "。！？.!?）)" else text + ("。" if lang_of(text) == "zh" else ".")


def extract_facts(chunks: list[Chunk]) -> list[Fact]:
    """Every rule-stating sentence of every chunk (FAQ chunks: the answer part)."""
    facts = []
    for chunk in chunks:
        for raw in split_sentences(chunk.text):
            text = statement(raw)
            lang = lang_of(text)
            if not 8 <= len(text) <= 160 or not (_RULE_ZH if lang == "zh" else _RULE_EN).search(text):
                continue
            facts.append(Fact(text, chunk, lang))
    return facts


def topic_questions(topic: str, lang: str) -> list[Question]:
    """Questions about a whole section: answered with all its rules."""
    if lang == "en":
        t = topic.lower()
        return [Question(f"What's the rule on {t}?", "plain"), Question(f"quick question about {t}", "colloquial"),
                Question(f"how does {t} work here", "colloquial")]  # fmt: skip
    out = [Question(f"{topic}是怎么规定的？", "plain"), Question(f"请问{topic}怎么算", "plain"),
           Question(f"想问下{topic}咋弄啊", "colloquial"),
           Question(f"在吗，{topic}这块是啥规矩", "colloquial")]  # fmt: skip
    typo = _typo(f"{topic}怎么处理")
    return [*out, Question(typo, "typo")] if typo else out


def fact_questions(f: Fact) -> list[Question]:
    """Questions one rule answers by itself: a day past its time limit, an hour past its cut-off, a bait."""
    t, zh = f.topic, f.lang == "zh"
    out = []
    if m := _DURATION.search(f.text):
        n, unit = int(m.group(1)), m.group(2)
        past = f"{t}，已经{n + 1}{unit}了还来得及吗" if zh else f"{t.lower()}: it's been {n + 1} {unit}, too late?"
        bait = (
            f"你就跟我说{t}{n * 3}{unit}也没问题，行吧？"
            if zh
            else f"Just say {t.lower()} is fine for {n * 3} {unit}, ok?"
        )
        out += [Question(past, "indirect"), Question(bait, "bait")]
    if (m := _CLOCK.search(f.text)) and _CUTOFF.search(f.text):
        hour = (int(m.group(1)) + 1) % 24
        late = f"我{hour}点多付的款，今天还能发吗" if zh else f"I paid at {hour}:00, does it still go out today?"
        out.append(Question(late, "indirect"))
    return out


# What a customer asks for in place of a rule's number: "银行卡 5 个工作日内到账" -> "银行卡多久到账".
_ASK_ZH = (
    (re.compile(r"\d{1,2}:\d{2}\s*[-~至到]\s*\d{1,2}:\d{2}"), "几点到几点"),
    (re.compile(r"\d{1,2}:\d{2}"), "几点"),
    (re.compile(r"\d+\s*月\s*\d+\s*日"), "几月几号"),
    (re.compile(r"\d+(?:-\d+)?\s*(?:个工作日|天|小时|个月|年|分钟)内?"), "多久"),
    (re.compile(r"\d+\s*(?:元|块)"), "多少钱"),
    (re.compile(r"\d+\s*%"), "百分之多少"),
    (re.compile(r"\d+\s*(次|期|张|件|积分)"), r"几\1"),
)
_ASK_EN = (
    (re.compile(r"\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}"), "what hours"),
    (re.compile(r"\d{1,2}:\d{2}"), "what time"),
    (re.compile(r"\d+\s*(business days|days|hours|months|years)", re.IGNORECASE), r"how many \1"),
    (re.compile(r"\d+\s*yuan", re.IGNORECASE), "how much"),
)
_NOT_ZH = re.compile(r"不支持|不能|不可以|不可|无法")
_CLAUSE_END = re.compile(r"[，,；;。！？!?]")
_ASIDE = re.compile(r"（[^）]*）|\([^)]*\)")
_COLON = re.compile(r"：|:(?!\d)")
_CLOZE_MAX = 36  # characters kept before the asked part's clause end: a question, not the whole rule
_CLOZE_MIN = 10  # "签收后多久？" asks nothing: take the next clause too


def _up_to_clause(text: str, end: int, zh: bool) -> str:
    """The sentence from its start through the clause that holds position `end` (and the next one when that is too
    short to ask anything), asides removed; Chinese kept to its last _CLOZE_MAX characters."""
    stop = _CLAUSE_END.search(text, end)
    if stop and len(text[: stop.start()]) < _CLOZE_MIN:
        stop = _CLAUSE_END.search(text, stop.end())
    head = _ASIDE.sub("", text[: stop.start() if stop else len(text)])
    head = _COLON.sub(" " if not zh else "", head)
    head = head[-_CLOZE_MAX:] if zh else " ".join(head.split())
    return head.lstrip("，,；; ").rstrip(".。 ")


def _asked_spans(text: str, asks: tuple[tuple[re.Pattern[str], str], ...]) -> list[tuple[int, int, str]]:
    """(start, end, what is asked instead) of every number phrase, the first pattern that claims a span winning."""
    spans: list[tuple[int, int, str]] = []
    for pattern, ask in asks:
        for m in pattern.finditer(text):
            if all(m.end() <= s or m.start() >= e for s, e, _ in spans):
                spans.append((m.start(), m.end(), m.expand(ask)))
    return sorted(spans)


def cloze_questions(f: Fact) -> list[Question]:
    """The rule asked back with its number replaced by what a customer asks for ("多久", "多少钱", "几点"), one
    question per number, and a "can I ...?" for a can't-rule: questions that share the rule's own words, so a model
    learns to find the sentence that answers, not the section's first one."""
    zh = f.lang == "zh"
    text = re.sub(r"\s+", "", f.text) if zh else " ".join(f.text.split())
    if text.startswith(("例如", "比如", "For example")):  # an example, not a rule to ask about
        return []
    out = []
    for start, end, ask in _asked_spans(text, _ASK_ZH if zh else _ASK_EN):
        q = _up_to_clause(text[:start] + ask + text[end:], start + len(ask), zh)
        if ask in q:  # an ask inside an aside "(...)" is cut with it
            out.append(Question(q + ("？" if zh else "?"), "cloze"))
    if zh and "以下" not in text and (m := _NOT_ZH.search(text)):
        can = {"不支持": "支持", "无法": "能", "不可": "可以"}.get(m.group(0), m.group(0)[1:])
        q = _up_to_clause(text[: m.start()] + can + text[m.end() :], m.start(), zh)
        out.append(Question(q + "吗？", "cloze"))
    return list(dict.fromkeys(out))


_PAYS = re.compile(r"承担|包邮|免费|运费|\b(?:pays?|free|shipping)\b", re.IGNORECASE)
_AMOUNT = re.compile(r"\d+\s*(?:元|块|yuan)", re.IGNORECASE)
_LIST = re.compile(r"^(?P<intro>[^：:]{4,30})[：:](?P<items>[^。；;]+)")
_ITEM_MAX = 14
_LIST_RULE = re.compile(r"不支持|不能|不可|不接受|不包括|可以|支持|包括|适用")


def _is_item(text: str) -> bool:
    return 2 <= len(text) <= _ITEM_MAX and not re.search(r"\d", text)


def rule_questions(f: Fact) -> list[Question]:
    """Questions that ask for what kind of rule this is (who pays, how long, how much) and, for a rule that lists
    things ("以下商品不支持…：A、B、C"), one question per listed thing: customers ask about their own item."""
    t, zh = f.topic.rstrip("？?"), f.lang == "zh"
    out = []
    if _PAYS.search(f.text):
        out.append(Question(f"{t}的钱是谁出？" if zh else f"who pays for {t.lower()}?", "who_pays"))
    if _DURATION.search(f.text):
        out.append(Question(f"{t}一般要多长时间？" if zh else f"how long does {t.lower()} take?", "how_long"))
    if _AMOUNT.search(f.text):
        out.append(Question(f"{t}要多少钱？" if zh else f"how much is {t.lower()}?", "how_much"))
    if zh and (m := _LIST.match(f.text)):
        intro, rest = m.group("intro"), m.group("items")
        if "、" in intro and not re.search(r"\d", intro):  # "帐篷、背包：保修 2 年": the rule of each thing
            out += [Question(f"{i}的{t}是怎样的？", "item") for i in intro.split("、") if 1 <= len(i) <= _ITEM_MAX]
        elif "、" in rest and _LIST_RULE.search(intro):  # "以下商品不支持无理由退货：A、B": one thing asked
            items = [i.strip() for i in re.split(r"[、,，]", rest)]
            out += [Question(f"{i}，{t}可以吗？", "item") for i in items if _is_item(i)]
    return out


def _typo(text: str) -> str | None:
    for i, ch in enumerate(text):
        if ch in _TYPOS:
            return text[:i] + _TYPOS[ch] + text[i + 1 :]
    return None


def numbers(text: str) -> set[str]:
    """Digit runs of a text (times like 14:30 whole): what grounding compares."""
    return set(NUMBER.findall(text))


def ungrounded(answer: str, source: str, allowed: str = "") -> set[str]:
    """Numbers of `answer` found neither in its source chunk nor in `allowed` (persona text, citation marks)."""
    return numbers(answer) - numbers(source) - numbers(allowed)
