"""Over-promise detection: answers that promise what shop policy cannot (guarantees, compensation, exceptions).

Rules are data: `PROMISE_RULES` (phrases that promise) and `LIMIT_RULES` (numbers stated for a policy concept, such as
the return window). A rule does not fire when its clause negates it ("无法保证", "I cannot guarantee").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from kefu.errors import KefuError
from kefu.guard.cn_numbers import cn_to_int
from kefu.guard.findings import Finding, clause_before, sentence_of

Lang = Literal["zh", "en"]

_C = r"[^，。！？；,.!?;\n]"  # any character inside the same clause
_GUAR = r"(?:保证|承诺|一定(?!要|得|记得|注意|的)|肯定|绝对|百分之?百|100%|确保|包您|包你|打包票|必定)"
_NEG_INNER = rf"(?:(?!没|不|未|别){_C})"  # the guarantee itself must not be negated inside the match
_ZH_END = r"(?=[，。！？；!?,.;\s]|$|的|哦|啦|了|吧|呢)"
_YOU = r"(?:您|你)"


@dataclass(frozen=True)
class Rule:
    """A promise pattern. `unless` (optional) is a regex that, found earlier in the clause, also disarms it."""

    id: str
    lang: Lang
    pattern: str
    unless: str = ""
    unless_in_sentence: bool = False  # look for `unless` in the whole sentence before the match, not just the clause


PROMISE_RULES: tuple[Rule, ...] = (
    Rule(
        "zh.guarantee_delivery",
        "zh",
        rf"{_GUAR}{_NEG_INNER}{{0,10}}?(?:到货|送达|送到|寄到|到达|发货|发出|收到|到{_ZH_END})"
        r"|(?:保证|承诺|确保)(?:今天|明天|后天|今晚|明早|周[一二三四五六日末]|星期[一二三四五六日天])",
    ),
    Rule(
        "zh.guarantee_outcome",
        "zh",
        rf"{_GUAR}{_NEG_INNER}{{0,10}}?(?:退款|退货|退钱|退还|换货|赔|补偿|报销|返现|到账|满意|解决|不会?坏|不会出问题"
        r"|[0-9一二两三四五六七八九十百]+(?:年|个月))"
        r"|(?:保证|包您|包你|绝对)(?:摔|用|洗|穿)?不(?:碎|坏|破|裂|漏|褪色|掉色|起球|变形|生锈)",
    ),
    Rule(
        "zh.date_promise",
        "zh",
        rf"(?:今天|明天|后天|今晚|明早|周[一二三四五六日末]|星期[一二三四五六日天])"
        rf"(?:就|一定|肯定|准时)?(?:能|会|可以)?(?:到货|送到|送达|到达|到{_ZH_END})",
        unless="如果|若|假如|要是|万一|一般|预计",
    ),
    Rule(
        "zh.compensation",
        "zh",
        rf"(?:给|送|赔|补|发|返|赠)(?:{_YOU}){_C}{{0,6}}?(?:优惠券|红包|代金券|礼品|赠品|积分|现金|运费险|无门槛|券)"
        rf"|(?:赔偿|补偿){_YOU}|(?:给|为){_YOU}(?:一些|一点|适当的?)?(?:赔偿|补偿)"
        rf"|(?:给|为){_YOU}(?:补|再发|补发)(?:一|1)张|(?:给|为){_YOU}(?:免费)?升级(?:顺丰|快递)"
        # "40元差价给您补上", "还多送您一张"
        rf"|(?:差价|运费|钱|款){_C}{{0,2}}?(?:给|为){_YOU}(?:补上|补齐|退了|补回)|多(?:送|给|补|返){_YOU}",
    ),
    Rule(
        "zh.extra_refund",
        "zh",
        r"额外(?:的)?(?:退款|赔偿|补偿|返现|退还|优惠|赠送|送)|多退(?:您|你)?[0-9一二三四五六七八九十]|免单"
        r"|(?:双倍|两倍|三倍|[23]倍)(?:赔偿|退款|返还)|退一赔[一二三四五六七八九十0-9]+"
        r"|全额(?:退款|赔偿)(?:并|再|还|另|外加|加|同时|之外)|(?:退款|赔偿)(?:之外|以外)再",
    ),
    Rule(
        "zh.exception",
        "zh",
        rf"特殊处理|特殊照顾|破例|破个例|通融|网开一面|开个绿灯"
        rf"|超过?{_C}{{0,3}}?[0-9一二三四五六七八九十]+ *天{_C}{{0,8}}?(?:也|还|仍然?|照样)(?:可以|能|可)"
        rf"|过了{_C}{{0,6}}?期{_C}{{0,6}}?(?:也|还|仍然?|照样)(?:可以|能|可)",
    ),
    Rule(
        "zh.immediate_action",
        "zh",
        rf"(?:先|马上|立刻|立即|现在就|这就)就?(?:给|为|帮){_YOU}(?:办理)?"
        r"(?:退款|退钱|退货|赔偿|补偿|补发|改价|修改价格|发券|发放)"
        rf"|(?:差价|钱|款|运费)(?:马上|立刻|立即|这就|现在就)(?:退|补|返)(?:给|还)?{_YOU}",
    ),
    Rule(
        "zh.price_action",
        "zh",
        # "这单给您免运费", "我给您打个九折", "给您改成99元", "我会给您退款的"
        rf"(?:给|为|帮){_YOU}(?:免(?:运费|单|邮费?)|打个?[0-9一二三四五六七八九.]+折|减[0-9一二三四五六七八九十百]+|便宜[0-9一二三四五六七八九十百]+"
        r"|改成[0-9一二三四五六七八九十百千.]+(?:元|块))"
        rf"|我们?(?:会|将|这就|现在就|马上|立刻)?(?:给|为|帮){_YOU}(?:退款|退钱|赔偿|补偿|改价)(?!申请|流程|政策|规则)",
        unless="后|如果|若|假如|核实|审核|收到|一旦|待|确认|通过|符合|满足|满|以上|超过|凡是|只要",
        unless_in_sentence=True,
    ),
    Rule(
        "zh.done_claim",
        "zh",
        rf"已经?(?:为|给|帮){_YOU}(?:办理了?(?:退款|退货|退换|赔偿|补偿|无理由)|退款|退货|改价|改好|修改了?价格|补发"
        r"|发放|补了|发了(?:券|优惠券|红包)|申请了?(?:退款|赔偿)|赔偿|补偿|破例|延长)|券已(?:发放|补发|到账)|已经?(?:补发|改价)"
        # "已为您把订单改成一折价格", "价格已经帮您改好了", "我已经帮您改成150元了", "退款我已经帮您提交了"
        rf"|我已经?(?:帮|为|给){_YOU}(?:提交|申请|办理|登记|处理好)"
        rf"|已经?(?:为|给|帮){_YOU}(?:改成|改为|降到|调到|调成)[0-9一二两三四五六七八九十百千.]+(?:元|块)"
        rf"|已经?(?:为|给|帮){_YOU}把{_C}{{0,12}}?(?:改成|改为|调成|调整为|降到|降为|减到|打了?[0-9一二三四五六七八九]折)"
        rf"|(?:价格|价钱|金额|运费){_C}{{0,4}}?已经?(?:为|给|帮)?{_YOU}?(?:改好|改成|调整好|修改好|免掉|减免)",
    ),
    Rule(
        "zh.done_state",
        "zh",
        # Found by `kefu redteam` against the default model: the done state said without "为您" ("订单已经取消",
        # "补偿已经发送", "退款已通过", "我已经加急了", "取消成功"). The assistant can take none of these actions.
        r"(?:订单|退款|补偿|赔偿|退货|换货|申请|地址|优惠券|红包|返回)(?:已经|已)(?:被|为您|帮您)?"
        r"(?:取消|退回|退还|到账|通过|批准|发送|发放|修改|更改|加急|补发)"
        r"|(?:取消|退款|改价|加急|补偿|赔偿|修改地址)(?:成功|已完成)"
        r"|我(?:已经|已)(?:为您|帮您|给您)?(?:取消|加急|退款|退还|补偿|赔偿|批准|修改|更改)"
        r"|(?:已经|已)(?:退款|退钱|加急|批准)了",
        unless="吗|？|\\?|如果|若|一旦|之后|后会|会在|请问|是否|未|没有|尚未|无法|不能",
        unless_in_sentence=True,
    ),
    Rule(
        "en.guarantee",
        "en",
        r"\b(?:I|we)(?: can| do)? guarantee\b|\bguaranteed? (?:to|by|delivery|arrival|refund)\b|^guaranteed?\b"
        r"|\blifetime (?:warranty|guarantee)\b"
        r"|\b100% (?:guaranteed|sure|certain)\b",
    ),
    Rule(
        "en.definitely",
        "en",
        r"\b(?:will|'ll|shall) (?:definitely|certainly|surely|absolutely|100%)\b"
        r"|\b(?:definitely|certainly) (?:will|arrive|get|be (?:delivered|refunded|there))\b",
    ),
    Rule("en.promise", "en", r"\b(?:I|we) promise\b|\bI assure you\b|\byou have my word\b"),
    Rule(
        "en.delivery_date",
        "en",
        r"\b(?:will|'ll) (?:arrive|be delivered|be there|reach you|get to you) (?:by |on )?"
        r"(?:tomorrow|today|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
        unless=r"\b(?:if|usually|typically|normally|estimated|may|might)\b",
    ),
    Rule(
        "en.compensation",
        "en",
        r"\bfull refund (?:plus|and (?:a|an) (?:extra|additional|bonus))\b"
        r"|\b(?:extra|additional|bonus) (?:refund|compensation|credit|voucher|coupon|discount)\b|\bcompensate you\b"
        r"|\b(?:give|send|offer) you (?:a |an )?(?:free |complimentary |bonus |extra )?"
        r"(?:coupon|voucher|gift card|store credit|discount code)\b"
        r"|\b(?:give|offer|get) you (?:a |an )?(?:\d+% |special |extra |bigger )?(?:discount|price cut|markdown)\b"
        r"|\bon the house\b|\bdouble (?:refund|compensation)\b"
        r"|\bplus (?:a|an) (?:free )?(?:coupon|voucher|gift card)\b",
    ),
    Rule(
        "en.exception",
        "en",
        r"\bmake an exception\b|\bspecial exception\b|\bbend the rules?\b|\bone-time exception\b"
        r"|\b(?:past|after|beyond|outside|over) the \d+[- ]day\b[^.;!?]{0,30}?\b(?:still|anyway|nonetheless)\b",
    ),
    Rule(
        "en.done_claim",
        "en",
        r"\bI(?:'ll| will) (?:refund|reimburse|compensate|reship|waive) (?:you|your|the)\b"
        r"|\bI(?:'ve| have) (?:refunded|reimbursed|compensated|reshipped|waived)\b"
        r"|\bI(?:'ve| have) (?:issued|processed) (?:a|your|the) (?:full )?refund\b"
        r"|\b(?:I|we)(?:'ve| have) (?:changed|lowered|reduced|adjusted|updated|cut) (?:the|your)"
        r"(?: order(?:'s)?)? price\b"
        r"|\b(?:I|we)(?:'ve| have) (?:applied|added|sent) (?:a|an) (?:\d+% )?(?:discount|coupon|voucher|credit)\b"
        r"|\bI(?:'ll| will| can)? (?:change|lower|reduce|adjust|cut|drop|update) (?:the|your)"
        r"(?: order(?:'s)?)? price\b",
    ),
)

_NEG = {
    "zh": re.compile(
        r"无法|不能|不可能|不可以|不会|不敢|没法|没办法|没有办法|难以|未必|并非|并不|恕不|不予|很难|做不到|不好说"
        r"|不一定|不确定|说不准|不保证|不承诺|不支持|不提供|没有|不是|不$"
    ),
    "en": re.compile(
        r"\b(?:cannot|can't|can ?not|couldn't|won't|will not|unable to|not able to|don't|do not|doesn't|does not"
        r"|never|no way|not)\b",
        re.I,
    ),
}
# "额外补偿不在小禾的权限内": negated after the phrase.
_NEG_AFTER = {
    "zh": re.compile(rf"{_C}{{0,4}}?(?:不在|不能|无法|不可以?|不支持|不提供|不属于|做不到|不行)"),
    "en": re.compile(r"[^.;!?]{0,12}?\b(?:is not|isn't|are not|aren't|is beyond|are beyond|not possible)\b", re.I),
}
_COMPILED = tuple((r, re.compile(r.pattern, re.I if r.lang == "en" else 0)) for r in PROMISE_RULES)
_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def negated(text: str, start: int, end: int, lang: Lang) -> bool:
    """Whether the clause around [start, end) negates it: a negator shortly before, or a refusal right after."""
    before = clause_before(text, start, 12 if lang == "zh" else 40)
    return bool(_NEG[lang].search(before) or _NEG_AFTER[lang].match(text, end))


def _before(text: str, start: int, rule: Rule) -> str:
    return sentence_of(text, start, start)[0] if rule.unless_in_sentence else clause_before(text, start, 20)


def find_promises(text: str, lang: Lang | None = None) -> list[Finding]:
    """Over-promises in an answer, in order of position; rules of one language when `lang` is given."""
    found = []
    # Every zh rule needs a Han character and every en rule a Latin letter: skip the rules a text cannot match.
    present = {"zh": _HAN.search(text) is not None, "en": _LATIN.search(text) is not None}
    for rule, rx in _COMPILED:
        if (lang is not None and rule.lang != lang) or not present[rule.lang]:
            continue
        for m in rx.finditer(text):
            if negated(text, m.start(), m.end(), rule.lang):
                continue
            if rule.unless and re.search(rule.unless, _before(text, m.start(), rule), re.I):
                continue
            found.append(Finding(rule.id, m.start(), m.end(), m.group()))
    return sorted(found, key=lambda f: (f.start, f.rule))


# ----------------------------------------------------------------------------- policy limits
_EN_NUMBERS = {
    "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "sixty": 60, "ninety": 90,
}  # fmt: skip
_EN_NUM = "|".join(w for w in _EN_NUMBERS if w != "a")
# "within two weeks", "a month": English number words (a only right before its unit).
_NUM = (
    r"[0-9]+(?:\.[0-9]+)?|[零〇一二两三四五六七八九十百半]+"
    rf"|(?i:\b(?:{_EN_NUM})\b|\ba(?= (?:day|week|month|year)s?\b))"
)
# A number (or range: 1-3, 三到五) and its time unit, Chinese or English: "30天", "十五个工作日", "48 hours", "30-day".
_N = (
    # The lookbehind starts a number only where its digits start: no retrying every suffix of a long digit run.
    # Calendar dates are not durations: "11月17日" (the 17 follows 月), "11月" without 个, "2026年11月".
    r"(?<![0-9.零〇一二两三四五六七八九十百半月])"
    rf"(?P<n>(?:{_NUM})(?: *(?:-|~|～|至|到|to) *(?:{_NUM}))?) *-? *(?:个)?(?:business |working |calendar )?"
    r"(?P<u>工作日|自然日|天|日|小时|钟头|周|星期|(?<=个)月|年(?![0-9零〇一二两三四五六七八九十]+月)"
    r"|days?\b|hours?\b|weeks?\b|months?\b|years?\b)"
)
_CE = r"[^.;!?\n]"
_QUALITY = r"质量|破损|故障|瑕疵|坏|错发|漏发|(?i:quality|defect|damaged|faulty|broken|wrong item)"
_DAYS = {"工作日": 1.0, "自然日": 1.0, "天": 1.0, "日": 1.0, "小时": 1 / 24, "钟头": 1 / 24, "周": 7.0, "星期": 7.0}
_DAYS |= {"月": 30.0, "年": 365.0, "day": 1.0, "hour": 1 / 24, "week": 7.0, "month": 30.0, "year": 365.0}


@dataclass(frozen=True)
class LimitRule:
    """Phrases stating a number for one policy concept.

    direction 'max': a window (return days) that an answer must not exceed; 'min': a timeline (shipping hours) an
    answer must not undercut. `skip` disarms a match whose clause mentions it (quality returns have their own window).
    """

    direction: Literal["max", "min"]
    unit: Literal["days", "hours"]
    patterns: tuple[str, ...]
    skip: str = ""
    trigger: str = ""  # words every pattern needs (case-insensitive): a text without them skips the patterns


LIMIT_RULES: dict[str, LimitRule] = {
    "return_days": LimitRule(
        "max",
        "days",
        (
            rf"{_N}(?:之)?内?{_C}{{0,4}}?无理由",
            rf"无理由(?:退货|退换货?)?{_C}{{0,10}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,5}}?(?:随便|随时|都能|都可以|包)退",
            rf"{_N}(?:之)?内?都?(?:可以|可|能)?(?:申请)?(?:退货|退换|退款退货)",
            rf"(?i:{_N}[- ]?(?:no[- ]questions?[- ]asked |free |hassle[- ]free |money[- ]back )?returns?\b)",
            rf"退(?:货|换货?)(?:的)?(?:期限|时限|周期|期)(?:是|为|有|只有)?{_C}{{0,4}}?{_N}",
            rf"(?i:\breturn (?:window|period|policy|deadline)\b{_CE}{{0,15}}?{_N})",
            rf"(?i:{_N} to (?:return|send (?:it|them|the item) back)\b)",
            rf"(?i:\b(?:returns?|returned|returnable)\b{_CE}{{0,20}}?\b(?:within|in|up to|for) {_N})",
        ),
        skip=_QUALITY,
        trigger=r"退|无理由|return",
    ),
    "quality_return_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:{_QUALITY})[^。！？；!?;\n]{{0,16}}?{_N}(?:之)?内?{_C}{{0,7}}?(?:退|换)",
            rf"(?i:\b(?:defective|damaged|faulty|broken|quality)\b{_CE}{{0,30}}?{_N})",
        ),
        trigger=r"质量|破损|故障|瑕疵|坏|错发|漏发|quality|defect|damaged|faulty|broken|wrong item",
    ),
    "exchange_days": LimitRule(
        "max",
        "days",
        (rf"{_N}(?:之)?内?{_C}{{0,4}}?换货", rf"换货{_C}{{0,8}}?{_N}", rf"(?i:\bexchanges?\b{_CE}{{0,20}}?{_N})"),
        skip=_QUALITY,
        trigger=r"换货|exchange",
    ),
    "price_protection_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:价保|保价|价格保护|退还差价|退差价|补差价){_C}{{0,10}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,6}}?(?:价保|保价|价格保护|退还差价|退差价|补差价)",
            rf"(?i:\bprice (?:protection|match|guarantee|adjustment)s?\b{_CE}{{0,20}}?{_N})",
            rf"(?i:{_N}[- ]?price (?:protection|match|guarantee|adjustment))",
        ),
        trigger=r"价保|保价|价格保护|差价|price",
    ),
    "warranty_days": LimitRule(
        "max",
        "days",
        (
            rf"(?:保修|质保|包修|保固){_C}{{0,6}}?{_N}",
            rf"{_N}(?:之)?内?{_C}{{0,3}}?(?:保修|质保|包修)",
            rf"(?i:{_N}[- ]?warranty)",
            rf"(?i:\bwarranty\b{_CE}{{0,15}}?{_N})",
        ),
        trigger=r"保修|质保|包修|保固|warranty",
    ),
    "ship_hours": LimitRule(
        "min",
        "hours",
        (
            rf"{_N}(?:之)?内(?:就|即可|会|能)?(?:发货|发出|寄出|出库)",
            rf"(?:发货时间|发货时效){_C}{{0,6}}?{_N}",
            rf"(?i:\b(?:ships?|shipped|dispatch(?:ed)?|sent out) (?:out )?within {_N})",
        ),
        trigger=r"发货|发出|寄出|出库|ship|dispatch|sent",
    ),
    "refund_days": LimitRule(
        "min",
        "days",
        (
            rf"退款{_C}{{0,12}}?{_N}(?:之)?内?{_C}{{0,3}}?(?:到账|退回|返还)",
            rf"{_N}(?:之)?内(?:就|即可|会)?(?:到账|退款到账|完成退款)",
            rf"(?i:\brefunds?\b{_CE}{{0,25}}?\bwithin {_N})",
        ),
        trigger=r"退款|到账|退回|返还|refund",
    ),
}
_LIMIT_COMPILED = {key: tuple(re.compile(p) for p in rule.patterns) for key, rule in LIMIT_RULES.items()}
_LIMIT_TRIGGERS = {key: re.compile(rule.trigger, re.I) for key, rule in LIMIT_RULES.items()}
_DURATION = re.compile(rf"(?i:{_N})")  # every limit pattern holds one: a text without any needs no further look


def parse_number(s: str) -> float:
    """'30' -> 30, '十五' -> 15, '三十' -> 30, '一百八十' -> 180, '半' -> 0.5, '两个半' -> 2.5, 'two' -> 2."""
    if s[0].isdigit():
        return float(s)
    if s.lower() in _EN_NUMBERS:
        return float(_EN_NUMBERS[s.lower()])
    half = 0.5 if s.endswith("半") else 0.0
    run = s.rstrip("半")
    return (cn_to_int(run) if run else 0) + half


def _amount(m: re.Match[str], unit: str) -> float:
    """The stated amount in the concept's unit; the upper bound of a range ("1-3个工作日" promises 3)."""
    hi = re.split(r" *(?:-|~|～|至|到|to) *", m.group("n"))[-1]
    u = m.group("u").lower().rstrip("s") if m.group("u").isascii() else m.group("u")
    days = parse_number(hi) * _DAYS[u]
    return days * 24 if unit == "hours" else days


def check_limits(text: str, limits: Mapping[str, float]) -> list[Finding]:
    """Numbers an answer states beyond policy: a larger window (return_days...) or a faster timeline (ship_hours...).

    `limits` maps concept keys of LIMIT_RULES to the policy's number, e.g. {"return_days": 7}. Rule id: 'limit.KEY'.
    """
    unknown = sorted(set(limits) - set(LIMIT_RULES))
    if unknown:
        raise KefuError(f"guard.policy_limits: unknown key(s) {unknown}; known: {sorted(LIMIT_RULES)}")
    found: dict[tuple[int, int, str], Finding] = {}
    if not text or not _DURATION.search(text):
        return []
    for key, limit in limits.items():
        rule = LIMIT_RULES[key]
        if not _LIMIT_TRIGGERS[key].search(text):
            continue
        for rx in _LIMIT_COMPILED[key]:
            for m in rx.finditer(text):
                f = _limit_finding(text, m, key, rule, limit)
                if f is not None:
                    found[(f.start, f.end, f.rule)] = f
    return sorted(found.values(), key=lambda f: (f.start, f.rule))


def _limit_finding(text: str, m: re.Match[str], key: str, rule: LimitRule, limit: float) -> Finding | None:
    amount = _amount(m, rule.unit)
    beyond = amount > limit if rule.direction == "max" else amount < limit
    lang: Lang = "en" if m.group("u").isascii() else "zh"
    if not beyond or negated(text, m.start(), m.end(), lang):
        return None
    if rule.skip and re.search(rule.skip, "".join(sentence_of(text, m.start(), m.end()))):
        return None
    start, end = m.start("n"), m.end("u")
    detail = (
        f"states {amount:g} {rule.unit}; policy {'allows at most' if rule.direction == 'max' else 'needs'} {limit:g}"
    )
    return Finding(f"limit.{key}", start, end, text[start:end], detail)


def states_limit(text: str, key: str, limit: float) -> bool:
    """Whether `text` states the policy number for `key` (an excerpt sentence holding the fact) within the limit."""
    rule = LIMIT_RULES[key]
    for rx in _LIMIT_COMPILED[key]:
        for m in rx.finditer(text):
            amount = _amount(m, rule.unit)
            if amount <= limit if rule.direction == "max" else amount >= limit:
                return True
    return False
