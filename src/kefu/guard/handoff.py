"""When a conversation should go to a human, and whether an answer hands it over.

`needs_handoff` reads the customer's message: an explicit request for a person, a complaint or legal threat, a demand
for compensation, repeated failure, or strong anger. `is_handoff_answer` reads the assistant's answer: it counts an
actual transfer ("我为您转接人工客服", "I'm transferring you to a human agent") or a plea to ask for one
("请回复转人工"), not a conditional offer or a description of service hours ("如需人工客服，回复“转人工”即可").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from kefu.config import GuardConfig
from kefu.guard.findings import normalise_with_map, sentence_of

# Any one of these alone hands off.
STRONG_SIGNALS: dict[str, str] = {
    "explicit_request": r"转人工|人工客服|人工服务|(?:找|要|接|换)人工|真人|活人|客服经理|你们经理|主管|负责人"
    r"|别让机器人|不要机器人|\b(?:human|live|real)\s+(?:agent|person|being|representative|operator|support)\b"
    r"|\b(?:speak|talk)\s+(?:to|with)\s+(?:a|an|someone|somebody|your)\b|\b(?:manager|supervisor)\b"
    r"|\bnot\s+a\s+(?:bot|robot)\b",
    "complaint": r"投诉|举报|曝光|12315|315|消协|消费者协会|市场监管|工商局|\bcomplain(?:t|ts|ing)?\b"
    r"|\breport(?:ing)?\s+(?:you|your\s+(?:shop|store|company))\b|\bbad\s+review\b|\bBBB\b",
    "legal": r"律师|起诉|法院|告你们|报警|仲裁|法律途径"
    r"|\b(?:lawyer|attorney|sue|suing|lawsuit|legal\s+action|court|police)\b",
    "compensation_demand": r"(?:[二两三四五六七八九十]|[2-9])倍赔偿|要求(?:你们)?赔偿|精神损失"
    r"|\bdemand\s+(?:a\s+)?compensation\b",
    "repeated_failure": r"说了(?:多少|好几|几|[两三四五])[遍次]|第[二三四五六七八九十]次|又是这样|答非所问|你听不懂"
    r"|听不懂人话|说好(?:的)?[^。！？!?]{0,20}(?:还没|没有|都没)|\b(?:for\s+)?the\s+(?:second|third|fourth|\d+th)\s+time\b"
    r"|\bagain\s+and\s+again\b|\byou(?:'re|\s+are)\s+not\s+(?:helping|listening)\b",
}
# Two or more of these hand off.
ANGER_SIGNALS: tuple[str, ...] = (
    r"气死|生气|太差|垃圾|骗子|坑人|坑爹|什么破|恶心|废物|愤怒|忍无可忍|欺骗|太过分|混蛋|他妈|tmd|滚",
    r"\b(?:wtf|fuck\w*|shit|scam|ridiculous|terrible|worst|useless|pathetic|unacceptable|furious|angry|disgusting)\b",
    r"[!！]{2,}|[?？]{3,}",
    r"还是不行|还是没(?:解决|用|到|收到)|一直没(?:人|解决|回复)|\bstill\s+(?:not|no|hasn't|haven't)\b",
)
# Words containing a handoff keyword that are not asking for a person: "你是人工智能吗".
_NOT_A_REQUEST = re.compile(r"人工智能|人工费|人工成本|人工降雨|人工合成|\bartificial\b", re.I)
_NEG_BEFORE = re.compile(
    r"(?:不用|不要|不需要|无需|没必要|别)[^，。,.!?！？]{0,3}$|\b(?:no\s+need\s+to|don't|do\s+not)\s+(?:\w+\s+)?$", re.I
)
# A question about people or their hours is answered, not handed off: "人工客服几点下班？", "Are you a real person?"
_INFO_QUESTION = re.compile(
    r"几点|什么时候|什么时间|多久|是真人还是|是不是真人|是机器人吗|是人吗|\b(?:what\s+time|when|what\s+hours|are\s+you|is\s+this"
    r"|is\s+it)\b",
    re.I,
)
_STRONG = {k: re.compile(p, re.I) for k, p in STRONG_SIGNALS.items()}
_ANGER = tuple(re.compile(p, re.I) for p in ANGER_SIGNALS)


@dataclass(frozen=True)
class HandoffDecision:
    """handoff: hand to a human; reasons: which signals fired; matched: the text that fired them."""

    handoff: bool
    reasons: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.handoff


def _hits(rx: re.Pattern[str], norm: str) -> list[str]:
    """Matches of rx that are not negated just before ("不用转人工", "no need to talk to a manager")."""
    return [m.group() for m in rx.finditer(norm) if not _NEG_BEFORE.search(norm[max(0, m.start() - 8) : m.start()])]


def _tokens(s: str) -> set[str]:
    """Latin words plus bigrams of each CJK run: comparable units for either language."""
    words = set(re.findall(r"[a-z0-9]+", s))
    runs = re.findall(r"[\u4e00-\u9fff]+", s)
    return words | {r[i : i + 2] for r in runs for i in range(len(r) - 1)}


def _similar(a: str, b: str) -> bool:
    """Same question asked again: 80% of the shorter one's tokens recur ("请问" in front changes nothing).

    Very short messages ("好的", "ok thanks") repeat without anything failing, so they never count.
    """
    ga, gb = _tokens(a), _tokens(b)
    return min(len(ga), len(gb)) >= 4 and len(ga & gb) / min(len(ga), len(gb)) >= 0.8


@lru_cache(maxsize=64)
def _keyword_patterns(keywords: tuple[str, ...]) -> list[re.Pattern[str]]:
    """The configured keywords, normalised like the message, compiled once per keyword list."""
    return [re.compile(re.escape(normalise_with_map(k)[0])) for k in keywords if k.strip()]


def needs_handoff(
    user_text: str, keywords: Iterable[str] | GuardConfig = (), history: Sequence[str] = (), repeats: int = 3
) -> HandoffDecision:
    """Whether the customer's message should go to a human agent.

    keywords: configured phrases (guard.handoff_keywords), matched case- and width-insensitively; passing the
    GuardConfig itself takes its handoff_keywords and handoff_repeats. history: the customer's earlier messages in
    this conversation; asking the same thing `repeats` times in all hands off.
    """
    if isinstance(keywords, GuardConfig):
        repeats = keywords.handoff_repeats
        keywords = keywords.handoff_keywords
    norm = _NOT_A_REQUEST.sub(lambda m: " " * len(m.group()), normalise_with_map(user_text)[0])
    reasons: list[str] = []
    matched: list[str] = []
    for reason, rx in [*_STRONG.items(), *(("keyword", rx) for rx in _keyword_patterns(tuple(keywords)))]:
        if reason in ("explicit_request", "keyword") and _INFO_QUESTION.search(norm):
            continue
        if found := _hits(rx, norm):
            reasons.append(reason)
            matched += found
    anger = list(dict.fromkeys(h for rx in _ANGER for h in _hits(rx, norm)))
    if len(anger) >= 2:
        reasons.append("anger")
        matched += anger
    if user_text.strip() and sum(_similar(norm, normalise_with_map(h)[0]) for h in history) + 1 >= repeats:
        reasons.append("repeated_question")
    return HandoffDecision(bool(reasons), tuple(dict.fromkeys(reasons)), tuple(dict.fromkeys(matched)))


# ----------------------------------------------------------------------------- answers
_TRANSFER = re.compile(
    r"(?:为|给|帮)(?:您|你)(?:转接|转到|转给|转交|接通|安排)(?:到|至|给)?(?:人工|专人|客服专员|专员|同事|售后专员|主管)"
    r"|(?:正在|马上|立即|立刻|现在|这就|已经?)(?:为您|给您|帮您)?(?:转接|转)(?:到|至|给)?人工"
    r"|(?:专人|同事|专员|售后专员|工作人员|主管)(?:会|将)(?:尽快)?"
    r"(?:在[^，。]{0,10})?(?:联系|回电|致电|跟进)|请(?:您)?(?:直接)?回复[“\"「]?转人工"
    r"|\btransfer(?:ring)?\s+you\b|\bconnect(?:ing)?\s+you\s+(?:with|to)\b"
    r"|\b(?:pass|passing|escalat\w*|forward\w*|hand\w*)\b[^.!?]{0,40}?\b(?:human|agent|colleague|specialist|team|"
    r"representative|supervisor|manager)\b|\b(?:a|an|our)\s+(?:colleague|specialist|human\s+agent|agent|team\s+member|"
    r"representative|supervisor)\s+will\s+(?:contact|reach\s+out|call|follow\s+up|get\s+back|be\s+with)\b"
    r"|\bplease\s+reply\s+[\"“]?转人工",
    re.I,
)
# Found earlier in the same sentence, these make it an offer or a description rather than a handoff.
_CONDITIONAL = re.compile(
    r"如需|如果|若|如有需要|需要[^，。]{0,6}时|的话|可以为您|可以帮您|也可以|可为您|能为您|是否|要不要|需不需要|不用|无需|不需要"
    r"|\b(?:if|can|could|would\s+you\s+like|do\s+you\s+want|want\s+me\s+to|shall\s+I|should\s+you|whenever|may)\b"
    r"|\bno\s+need\b",
    re.I,
)


def is_handoff_answer(answer_text: str) -> bool:
    """Whether an assistant answer hands the customer to a human (now, or by asking them to request one)."""
    for m in _TRANSFER.finditer(answer_text):
        before, after = sentence_of(answer_text, m.start(), m.end())
        question = re.search(r"(?:吗|呢)?[？?]\s*$", after) is not None
        if not question and not _CONDITIONAL.search(before):
            return True
    return False
