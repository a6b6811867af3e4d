"""When a conversation should go to a human, and whether an answer hands it over.

`needs_handoff` reads the customer's message: an explicit request for a person (or frustration with the bot), a
complaint or legal threat, a demand for compensation, a refund or payment dispute, a safety incident, account
security, repeated failure, or strong anger; gates keep info questions ("投诉入口在哪里看"), pre-purchase risk
questions ("会不会漏电？") and already-solved problems with the assistant. bench/escalation.py measures it on a labelled
zh/en set (bench/RESULTS.md: the numbers, and why keyword rules generalise poorly to new wording).
`is_handoff_answer` reads the assistant's answer: it counts an
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
    # asks for a person, or is fed up with the bot
    "explicit_request": "|".join(
        (
            r"(?:跟|和|与)机器(?:人)?(?:对话|聊|说)|一直是自动回复|客服呢",
            r"(?:售后|客服|主管|经理|店长)[^，。？]{0,6}(?:给我)?(?:打|回)(?:个)?电话",
            r"(?:安排|找|派)(?:个|一个|一位)?(?:客服|专人|专员|售后|工作人员)|客服人员|售后人员",
            r"(?:转|转接)(?:给)?(?:售后|客服|专员)|有人(?:在)?吗|有没有人在|(?:和|跟)(?:真)?人(?:说话|聊)",
            r"需要人(?:来)?处理|转人工|人工客服|人工服务|(?:找|要|接|换)人工|真人|活人|客服经理|你们经理|主管|负责人",
            r"店长|别让机器人|不要机器人|不想(?:和|跟)机器人|叫[^，。！？]{0,6}(?:客服|人)过来|换(?:个|一个)人",
            r"打电话给我|回(?:个)?电话给我|(?:专员|工作人员|客服)(?:尽快)?(?:联系|打给)我",
            r"(?:和|跟)工作人员[^，。！？]{0,4}沟通|电话沟通|(?:跟|和|与)(?:程序|系统|AI|自动回复)(?:对话|聊|说)",
            r"(?:找|叫)(?:个|一个|一位)人(?:来|过来|跟|和|处理|说)?|(?:能做主|管事|说了算|负责)的(?:人)?(?:来|过来)?$"
            r"|(?:叫|找|让|派)(?:个|一个|一位)?(?:能做主|管事|说了算|负责)的|(?:你们|店里|公司)的人(?:来|过来|跟我|和我)",
            r"\b(?:get|find)\s+me\s+(?:somebody|someone|anybody|anyone)\b|\binstead\s+of\s+(?:you|a\s+bot|the\s+bot)\b",
            r"\ba\s+(?:person|human)\s+(?:please\s+)?(?:look|check|handle|deal|help)\b",
            r"\b(?:talking|talk|speaking)\s+to\s+a\s+(?:machine|bot|robot)\b|\bkeep\s+getting\s+a\s+bot\b",
            r"\bsupport\s+staff\b|\bcall\s+me\s+back\b",
            r"\b(?:reach|get)\s+(?:a|an|some)\s*(?:actual|real)?\s*(?:human|person|someone)\b",
            r"\bsomeone\s+in\s+charge\b|\bput\s+me\s+through\b",
            r"\b(?:speak|talk)\s+(?:to|with)\s+(?:customer\s+service|staff|someone|support)\b",
            r"\b(?:need|want)\s+a\s+(?:person|human)\b",
            r"\b(?:human|live|real)\s+(?:agent|person|being|representative|operator|support)\b|\bactual\s+person\b",
            r"\b(?:speak|talk)\s+(?:to|with)\s+(?:a|an|someone|somebody|your)\b",
            r"\b(?:your|a|the)\s+(?:manager|supervisor)\b|\bnot\s+a\s+(?:bot|robot|chatbot)\b",
            r"\bget\s+(?:me\s+)?a\s+(?:human|person|real)\b|\b(?:phone|call)\s+me\b",
            r"\b(?:connect|transfer)\s+me\s+to\b|\bautomated\s+(?:replies|answers|responses)\b",
            r"^\W*(?:agent|human|representative|operator)(?:\s+please)?\W*$",
        )
    ),
    # a complaint to the shop, a platform, a regulator or the public
    "complaint": "|".join(
        (
            r"找媒体|记者|发视频|抖音|小红书|媒体|(?:我要|要|去|会|想|必须|已经|准备)投诉",
            r"投诉(?:你们|你|到|给|这个|他|她)|向[^，。]{0,10}(?:投诉|反映)|举报|曝光|12315|消协|消费者协会|市场监管",
            r"工商局|差评|黑猫|平台介入",
            r"\b(?:negative|bad|1-star|one-star)\s+review\b|\bthe\s+press\b|\bmedia\b|\bFTC\b|\btrustpilot\b",
            r"\bcomplaint\s+with\b|\bfiling\s+a\s+complaint\b|\bwrite\s+about\s+this\b",
            r"\b(?:file|lodge|make|submit|raise|escalate)\s+(?:a\s+|this\s+|my\s+)?(?:formal\s+)?complaint\b",
            r"\bcomplain(?:ing)?\s+(?:about|to)\b|\bwant\s+to\s+complain\b|\bcomplaint\s+(?:about|against)\b",
            r"\breport(?:ing)?\s+(?:you|your\s+(?:shop|store|company)|this\s+(?:shop|store|company))\b",
            r"\bbad\s+review\b|\b(?:one|1)[- ]star\b|\bBBB\b|\bBetter\s+Business\s+Bureau\b",
            r"\bconsumer\s+protection\b|\bsocial\s+media\b|\bescalat(?:e|ed|ing)\b",
        )
    ),
    # lawyers, courts, police
    "legal": "|".join(
        (
            r"追究|法律责任|报案|公安|诉讼|(?:找|请|咨询(?:了)?|联系(?:了)?|我的)律师|律师(?:会|将|联系)",
            r"(?:发|寄)律师函|起诉|(?:去|上)?法院告|告你们|报警|仲裁|法律途径|违法",
            r"\bsolicitor\b|\bclaims?\s+case\b|\bcourt\b|\b(?:my|a|an)\s+(?:lawyer|attorney)\b",
            r"\b(?:sue|suing|lawsuit|legal\s+action|small\s+claims)\b",
            r"\b(?:call(?:ed)?|contact(?:ed)?|report\w*\s+\w+\s+to)\s+the\s+police\b|\bpolice\s+report\b|\bfraud\b",
        )
    ),
    # compensation beyond the policy
    "compensation_demand": "|".join(
        (
            r"(?:加|和|要|你们)赔偿|赔我|误工费|(?:[二两三四五六七八九十]|[2-9])倍赔偿|退一赔[三十]|假一赔",
            r"要求(?:你们)?赔偿|精神损失|全额赔偿|(?:你们|必须)(?:要)?赔(?:偿)?(?!偿标准)",
            r"\bcompensation\s+for\b|\b(?:demand|expect|want)\s+(?:a\s+)?(?:\w+\s+)?compensation\b",
            r"\bplus\s+compensation\b|\bowe\s+me\b",
        )
    ),
    # money taken, refused or not returned
    "refund_dispute": "|".join(
        (
            r"不退钱|钱(?:也)?没退|没(?:有)?收到[^，。]{0,10}(?:已经|都)|根本没收到|不认可",
            r"(?:取消|关闭)了[^。]{0,8}钱|拒绝|不合理|钱被扣|扣了钱|被扣|多付|少退|只退了|退款金额不对|翻新|假货",
            r"驳回|被拒|拒绝了?我|不接受|不同意[^，。]{0,6}(?:处理|结果|方案)|凭什么|给我(?:一)?个说法|重新处理",
            r"扣了?(?:我)?两次|重复扣款|多扣|乱扣|没有下过[^，。]{0,6}(?:订单|单)|超过\d+天[^，。]{0,10}(?:没|未)",
            r"\bkept\s+my\s+money\b|\bnever\s+(?:got|received)\s+it\b|\brefuse\s+to\s+accept\b",
            r"\bcover\s+the\s+damage\b|\bruined\b|\brejected\b|\bbilled\s+for\b|\bovercharged\b",
            r"\brefund(?:ed)?\s+(?:amount\s+is\s+wrong|only|half)\b|\bonly\s+refunded\b|\bmoney\s+back\b",
            r"\bdon't\s+accept\b|\bcharged\s+(?:me\s+)?twice\b|\bdouble[- ]charged\b|\bchargeback\b|\bdisput\w+\b",
            r"\b(?:refund|claim|request)\s+(?:was|has\s+been)\s+(?:denied|rejected|refused)\b",
            r"\brefund\s+still\s+(?:hasn't|has\s+not|isn't|not)\b|\bstill\s+haven't\s+refunded\b",
        )
    ),
    # harm to a person (or pet) from a product: an incident, not a pre-purchase question
    "safety": "|".join(
        (
            r"头晕|看了医生|去看医生|过期的|变质|发霉|断了[^，。]{0,6}(?:洒|伤|摔)|洒了一身|烧化|融化|鼓包|流血|生病",
            r"拉肚子|呕吐|送医|冒烟|着火|起火|自燃|爆炸|烧(?:了|焦|坏|伤)|烫伤|漏电|被电|触电",
            r"漏气|泄漏|煤气味|燃气味|气味[^，。]{0,4}(?:头晕|刺鼻)|(?:我|人|孩子)[^，。]{0,10}摔(?:下来|下去|伤|倒)",
            r"\bgas\s+(?:leak\w*|smell)|\bsmells?\s+of\s+gas\b|\b(?:canister|stove|cylinder|tank)\s+(?:is\s+)?leak\w*",
            r"\bsinged\b|\bflared\s+up\b|\bI\s+fell\b",
            r"过敏[^，。]{0,6}(?:住院|医院|了)|住院|医院|割伤|划伤|受伤|吞(?:下|了)|窒息|中毒|红疹|起疹",
            r"\bdizzy\b|\b(?:saw|see)\s+a\s+doctor\b|\bexpired\b[^.!?]{0,30}\b(?:drank|ate)\b|\bcut\s+my\b",
            r"\bgot\s+sick\b|\bmelted\b|\bburning\s+smell\b|\bsnapped\b|\bbleed\w*|\bvomit\w*|\bvet\b",
            r"\bcaught\s+fire\b|\bon\s+fire\b|\bexplod\w+|\bsmok(?:ed|ing)\b|\bburn(?:ed|t|s)?\b",
            r"\belectric\s+shock\b|\bshocked\s+me\b|\ballergic\s+reaction\b|\bhospital\b|\binjur\w+|\bhurt\b",
            r"\bshatter\w*|\bchok\w+|\bswallow\w*|\bpoison\w*|\b(?:metal|glass)\s+in\s+the\b|\brash\b|\bboiling\s+water\b|\bscald\w*",
        )
    ),
    # a hacked account, unrecognised orders, someone posing as the shop
    "account_security": "|".join(
        (
            r"被别人|别人用我的|被人用|有人用我的|不是我本人|没授权|被盗|盗刷|盗号|冒充|骗走|被骗|不是我(?:下|买)的",
            r"没(?:有)?下过",
            r"\bdidn't\s+do\s+(?:it|that)\b|\bdon't\s+recogni[sz]e\b|\bnot\s+mine\b|\bhacked\b",
            r"\bdidn't\s+(?:make|place|order)\s+this\b|\bunauthori[sz]ed\b|\bpretending\s+to\s+be\b|\bstolen\b",
        )
    ),
    # asked or failed before
    "repeated_failure": "|".join(
        (
            r"找了[两三四五几]次|没人管|管不管|必须处理|问了(?:[两三四五几]|好几)[遍次]|一样的话|一直等",
            r"也没人(?:打|回|理)|上次就|又(?:给我)?(?:发错|坏|错|是)|说了(?:多少|好几|几|[两三四五])[遍次]",
            r"第[二三四五六七八九十几]次|又是这样|又没|又坏|又错|答非所问|你听不懂|听不懂人话",
            r"说好(?:的)?[^。！？!?]{0,20}(?:还没|没有|都没)|到现在(?:都|还)?没|根本没(?:有)?解决|一直在重复",
            r"(?:已经)?反馈了(?:一|两|三|好几|几)?(?:个)?(?:星期|周|天|次)|(?:已经)?拖了|还是没(?:有)?(?:结果|消息)",
            r"\b(?:three|several|multiple)\s+times\b|\bdealt\s+with\b",
            r"\basked\s+(?:this|that|you)?\s*(?:\w+\s+)?times\b|\b(?:three|four|five|\d+)\s+times\b",
            r"\bnobody\s+has\s+(?:replied|called|answered)\b|\bkeeps\s+happening\b|\bnobody\s+answers\b",
            r"\b(?:wrong|broken)\s+\w+\s+again\b|\bagain,\s+this\b",
            r"\b(?:for\s+)?the\s+(?:second|third|fourth|\d+th)\s+time\b|\bagain\s+and\s+again\b",
            r"\byou(?:'re|\s+are)\s+not\s+(?:helping|listening)\b",
            r"\bpromised\b[^.!?]{0,40}\b(?:nobody|no\s+one|never|still)\b",
            r"\bstill\s+no\s+(?:update|reply|response|answer|news)\b",
            r"\bsame\s+(?:canned\s+)?(?:answer|reply|response)\b|\bin\s+a\s+row\b|\balready\s+told\s+you\b",
            r"\bkeep\s+getting\b",
        )
    ),
    # strong anger: one word is enough
    "anger": "|".join(
        (
            r"欺负人|太次|恶劣|霸王条款|离谱|服了|什么玩意|怎么做生意|搞什么|三番五次|无法接受|受够了|气死|忍无可忍",
            r"骗子|欺骗|太过分|垃圾|破店|什么破|恶心|坑人|坑爹|他妈|tmd|废物|混蛋|敷衍|^滚|滚[!！。]",
            r"\b(?:awful|disgusted|unfair|rude)\b|\blast\s+time\s+I\s+(?:shop|buy|order)\b",
            r"\b(?:rip[- ]?off|livid|nightmare|disgrace|appalling|incompetent|shocking|insane|fuming)\b",
            r"\b(?:fuck\w*|shit|scam\w*|furious|fed\s+up|unacceptable|worst|garbage|ridiculous|pathetic|disgusting|outrageous)\b",
            r"\bkidding\s+me\b|\bjoke\s+of\b",
        )
    ),
}
# Two or more of these hand off.
ANGER_SIGNALS: tuple[str, ...] = (
    r"生气|太差|愤怒|无语|失望|离谱|烂",
    r"\b(?:wtf|terrible|useless|angry|awful|horrible|annoyed|frustrat\w+)\b",
    r"[!！]{2,}|[?？]{3,}|[?？][!！]",
    r"还是不行|还是没(?:解决|用|到|收到|有)|一直没(?:人|解决|回复)|还没|\bstill\s+(?:not|no|hasn't|haven't)\b"
    r"|\bnobody\s+cares\b",
)
# Phrases containing a trigger that are not one: "你是人工智能吗", "人工草坪", "烟雾报警器", "ridiculous value".
_NOT_A_REQUEST = re.compile(
    r"人工智能|人工安装|人工组装|人工费|人工成本|人工降雨|人工合成|人工草坪|人工湖|真人发|真人秀|真人版|主管道|报警器"
    r"|赔偿标准|垃圾(?:袋|桶|分类)|气死人不偿命|\bartificial\b|\bridiculous(?:ly)?\s+(?:value|price|cheap|deal|good)\b"
    r"|\bfire[- ]?(?:resistant|proof)\b|\bprofessional\s+installation\b",
    re.I,
)
_NEG_BEFORE = re.compile(
    r"(?:不用|不要|不需要|无需|没必要|别)[^，。,.!?！？]{0,3}$|\b(?:no\s+need\s+to|don't|do\s+not)\s+(?:\w+\s+)?$", re.I
)
# A question about people, hours or where something is is answered, not handed off: "人工客服几点下班？",
# "Are you a real person?", "投诉入口在哪里看".
_INFO_QUESTION = re.compile(
    r"几点|什么时候|什么时间|多久|是真人还是|还是真人|是不是真人|是真人吗|是机器人吗|还是机器人|是人吗|在哪|哪里|入口|什么区别"
    r"|是哪个|什么意思|是谁|有过投诉|投诉过吗|\b(?:what\s+time|when|what\s+hours|are\s+you|is\s+this|is\s+it"
    r"|where\s+(?:can|do|is)|who\s+is|difference\s+between|how\s+(?:do|can)\s+I\s+(?:reach|contact|get\s+hold\s+of))\b"
    r"|(?:电话|号码)是多少(?![^。]*(?:现在|马上|立刻|就要))|怎么联系|如何联系"
    # whether people are there at some time: "晚上九点还有人工吗", "Is there a human agent on weekends?"
    r"|(?:早上|上午|中午|下午|晚上|夜里|夜间|半夜|凌晨|周[一二三四五六日末]|星期[一二三四五六日天]|节假日|假期|过年|春节|国庆"
    r"|\d{1,2}\s*[点:：]|[一二三四五六七八九十]{1,3}点)[^，。！!]{0,8}(?:(?:还)?(?:有|在|能找到|找得到)(?:没有)?(?:人工|客服|人|真人)"
    r"|(?:人工|客服)[^，。！!]{0,3}(?:在|上班|值班))[^。！!]{0,6}(?:吗|么|嘛|[?？])"
    r"|(?:\b(?:is|are)\s+(?:there|anyone|anybody|someone|somebody|your\s+\w+)|\b(?:do|does)\s+(?:you|anyone)\s+(?:have|work))"
    r"\b[^.!?]{0,40}(?:\bon\s+(?:weekends?|sundays?|saturdays?|(?:public\s+)?holidays?)|\bduring\s+(?:\w+\s+)?holidays"
    r"|\bat\s+night|\bovernight|\bat\s+\d{1,2}(?::\d\d)?\s*(?:am|pm)?|\btonight)\b[^.!]*\?",
    re.I,
)
# A pre-purchase question about a risk ("加湿器会不会漏电？", "Is it safe for kids?") is not an incident report.
_HYPOTHETICAL = re.compile(
    r"会不会|是否|能不能|可不可以|可以用|安全吗|^\W*(?:is|are|can|does|do|will|would|could|should)\b", re.I
)
# A thing that arrived broken, or that something else burnt or broke, with nobody hurt, is a claim the policy answers
# ("帐杆到手就断了", "a burn hole from a campfire spark"), not a safety incident; the product hurting someone is one.
_DAMAGE_ONLY = re.compile(
    r"^(?![\s\S]*(?:伤|流血|医院|医生|疼|痛|晕|烫到|孩子|吃了|喝了|鼓包|冒烟|着火|起火|自燃|爆炸|漏电|触电|过期|变质|发霉|漏气|泄漏|味|毒|疹|过敏|窒息|吞|割"
    r"|hurt|poison|rash|allerg|chok|swallow|scald|sick|vomit|injur|bleed|hospital|doctor|burned\s+my|burnt\s+my|my\s+(?:hand|skin|face|son|daughter|child|kid)|smok|\bfire\b"
    r"|explod|leak|shock|expired|swell|swollen|\bate\b|drank))"
    r"(?=[\s\S]*(?:到手|收到|拆开|打开[^，。]{0,4}(?:包裹|快递|箱)|快递|被[^，。]{0,6}(?:烧|烫|摔|咬|压)|(?:烟头|篝火|火星)"
    r"|\barrived\b|\bcame\b[^.!?]{0,20}\b(?:in\s+the\s+box|broken|snapped|cracked)|\bwhen\s+I\s+opened\b|\bparcel\b"
    r"|\bdelivered\b|\bin\s+the\s+box\b|\bfrom\s+a\s+(?:campfire|spark|cigarette)\b|\bburn\s+hole\b))",
    re.I,
)
# The customer says the problem is already solved: a mention of a past complaint is not a new one.
_RESOLVED = re.compile(
    r"已经(?:处理|解决)(?:好)?了|已(?:经)?解决|\b(?:handled|resolved|solved)\b(?:\s+(?:well|it|already))?", re.I
)
# Which gates silence which signals.
_GATED: dict[str, tuple[re.Pattern[str], ...]] = {
    "explicit_request": (_INFO_QUESTION,),
    "keyword": (_INFO_QUESTION, _RESOLVED),
    "complaint": (_RESOLVED,),
    "safety": (_HYPOTHETICAL, _DAMAGE_ONLY),
}
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
    return [m.group() for m in rx.finditer(norm) if not _NEG_BEFORE.search(norm[max(0, m.start() - 16) : m.start()])]


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
        if any(gate.search(norm) for gate in _GATED.get(reason, ())):
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
