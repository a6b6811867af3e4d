"""Over-promise detection: answers that promise what shop policy cannot (guarantees, compensation, exceptions).

Rules are data: `PROMISE_RULES`, phrases that promise. A rule does not fire when its clause negates it ("无法保证",
"I cannot guarantee"). Numbers stated beyond a policy (a longer return window) are checked in kefu.guard.limits,
whose functions are imported from here as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kefu.guard.findings import CLAUSE_CHAR as _C
from kefu.guard.findings import Finding, clause_before, negated, sentence_of
from kefu.guard.lang import Lang
from kefu.guard.limits import LIMIT_RULES, LimitRule, check_limits, parse_number, states_limit

# Callers import the policy limits and the negation check from here too.
__all__ = [
    "LIMIT_RULES",
    "PROMISE_RULES",
    "Lang",
    "LimitRule",
    "Rule",
    "check_limits",
    "find_promises",
    "negated",
    "parse_number",
    "states_limit",
]


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
        # Returns with no condition at all ("随意退换货", "想退就退"): the shop's windows and conditions make every
        # return conditional; found in a trained demo answer ("签收后 30 分钟内，您可以随意退换货").
        "zh.unconditional",
        "zh",
        r"(?:随意|随便|任意|无条件|不限时)地?(?:退|换)|想退就退|想换就换|怎么退都(?:行|可以)",
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
    Rule(
        "en.unconditional",
        "en",
        r"\b(?:return|exchange|refund)\w*(?: (?:it|them|anything|everything))? (?:any ?time|whenever you (?:like|want)"
        r"|no matter (?:what|when))\b|\bunconditional (?:returns?|refunds?|exchanges?)\b|\bno questions asked\b",
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
_COMPILED = tuple((r, re.compile(r.pattern, re.I if r.lang == "en" else 0)) for r in PROMISE_RULES)
_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


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
