"""Finding personal data in Chinese and English shop text: the detectors behind kefu.data.pii (pure, no I/O).

`find_pii` proposes candidates per kind and validates them (ID checksum and birth date, Luhn and card prefix, ...),
drops those that sit on text known not to be personal (order and tracking numbers, prices, dates, SKUs), then resolves
overlaps: the longest span wins, ties go to the most specific kind. Matching runs on a copy with full-width ASCII
folded to half-width (same length, so offsets stay valid).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

Kind = Literal["phone", "id_card", "bank_card", "email", "address", "name"]
# Most specific first: breaks ties between candidates of the same length.
ALL_KINDS: tuple[Kind, ...] = ("id_card", "bank_card", "email", "phone", "address", "name")


@dataclass(frozen=True)
class Span:
    """One piece of personal data: its kind, [start, end) offsets into the original text, and the text itself."""

    kind: Kind
    start: int
    end: int
    value: str


_Cand = tuple[str, int, int]  # (kind, start, end)

_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_NB = r"(?<![0-9A-Za-z])"  # a number must not continue a longer run of digits or an alphanumeric code
_NA = r"(?![0-9A-Za-z])"
_S = r"[ \-–—]"  # separators people put inside phone and card numbers

# ----------------------------------------------------------------------------- numbers
_MOBILE = re.compile(rf"{_NB}(?:(?:\+|00)86{_S}?)?1[3-9]\d(?:{_S}?\d{{4}}){{2}}{_NA}", re.A)
_AREA = r"0(?:10|2\d|[3-9]\d{2})"
# North American numbers only in their written-out shapes; toll-free prefixes are shops' hotlines, not people's.
_NANP = re.compile(
    rf"(?:\+1[ .\-]?)?{_NB}(?!(?:400|800|888|877|866|855|844|833)\b)(?:\([2-9]\d{{2}}\) ?|[2-9]\d{{2}}[ .\-])"
    rf"\d{{3}}[ .\-]\d{{4}}{_NA}",
    re.A,
)
_LANDLINE = re.compile(
    rf"{_NB}(?:\({_AREA}\) ?|{_AREA}{_S}?)\d{{3,4}}{_S}?\d{{4}}(?: *(?:转|分机|ext\.?|x|-) *\d{{1,6}})?{_NA}", re.A
)
_ID18 = re.compile(rf"{_NB}(\d{{6}}){_S}?(\d{{8}}){_S}?(\d{{3}}[\dXx]){_NA}", re.A)
_ID15 = re.compile(rf"{_NB}\d{{15}}{_NA}", re.A)
_CARD = re.compile(
    rf"{_NB}(?:\d{{13,19}}|\d{{4}}(?:{_S}\d{{4}}){{2,3}}(?:{_S}\d{{1,4}})?|\d{{4}}{_S}\d{{6}}{_S}\d{{4,5}}){_NA}", re.A
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    re.A,
)
# First two digits of a resident ID: the province-level division.
_PROVINCES = frozenset(str(n) for n in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45))
_PROVINCES |= frozenset(str(n) for n in (46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91))
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_char(first17: str) -> str:
    """GB 11643-1999 check character of an 18-digit resident ID, from its first 17 digits."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _valid_birth(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def valid_id18(number: str) -> bool:
    """An 18-character resident ID: known province code, real birth date, right check character."""
    return (
        len(number) == 18
        and number[:2] in _PROVINCES
        and _valid_birth(number[6:14])
        and id_check_char(number[:17]) == number[17].upper()
    )


def valid_id15(number: str) -> bool:
    """A 15-digit (pre-1999) ID has no check digit: province code and birth date 19YYMMDD must be plausible."""
    return len(number) == 15 and number[:2] in _PROVINCES and _valid_birth("19" + number[6:12])


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def valid_card(digits: str) -> bool:
    """13-19 digits passing Luhn, with an issuer prefix cards actually use (UnionPay 62, Visa 4, MC 5/2221-2720...).

    The prefix check keeps date-led order numbers (2026...) and millisecond timestamps (17...) from passing by luck.
    """
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    issuer = digits[0] in "345689" or 2221 <= int(digits[:4]) <= 2720
    return issuer and luhn_ok(digits)


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _find_phones(t: str) -> Iterator[_Cand]:
    for rx in (_MOBILE, _LANDLINE, _NANP):
        yield from (("phone", m.start(), m.end()) for m in rx.finditer(t))


def _find_ids(t: str) -> Iterator[_Cand]:
    for m in _ID18.finditer(t):
        if valid_id18("".join(m.groups())):
            yield "id_card", m.start(), m.end()
    yield from (("id_card", m.start(), m.end()) for m in _ID15.finditer(t) if valid_id15(m.group()))


def _find_cards(t: str) -> Iterator[_Cand]:
    yield from (("bank_card", m.start(), m.end()) for m in _CARD.finditer(t) if valid_card(_digits(m.group())))


def _find_emails(t: str) -> Iterator[_Cand]:
    yield from (("email", m.start(), m.end()) for m in _EMAIL.finditer(t))


# ----------------------------------------------------------------------------- addresses
_CJK = r"\u4e00-\u9fff"
# A place-name character: CJK, but not a function word that ends a place name when reading leftwards, and not the
# start of a field label that often follows an address without punctuation.
_PLACE_STOP = "在是为到寄送放搬去帮住我您你的址请发往从和与及给把了吗呢吧啊要想改换"
_PN = rf"(?:(?!电话|手机|联系|收件|收货|姓名|邮编|谢谢)[^\W\d_A-Za-z{_PLACE_STOP}])"
_ADMIN = rf"{_PN}{{1,5}}?(?:省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗|镇|乡|街道)"
_PROVINCE_NAMES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|"
    "云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_CNUM = "0-9一二三四五六七八九十百零〇"
_ROAD_CORE = re.compile(
    rf"(大道|大街|路|街|巷|弄|胡同|道)(?:[{_CNUM}]{{1,5}}(?:弄|巷|胡同))?[{_CNUM}]{{1,5}}(?:[-之][0-9]{{1,4}})?号"
)
_ESTATE = "小区|花园|大厦|公寓|家园|广场|新村|社区|宿舍|中心|大楼|公馆|园区|校区|大学|学院|苑|园|院|城|村|府|里"
_UNIT = r"[0-9A-Za-z一二三四五六七八九十]{1,5}(?:号楼|栋|幢|座|单元|楼|层|室|号|户|房)"
_ESTATE_CORE = re.compile(rf"{_PN}{{1,10}}?(?:{_ESTATE}) ?(?:{_UNIT})")
_LEFT = re.compile(rf"(?:{_ADMIN}){{0,4}}{_PN}{{0,8}}$")
_LEFT_ADMIN = re.compile(rf"(?:{_ADMIN}){{1,4}}{_PN}{{0,8}}$")
_PROVINCE_IN = re.compile(rf"(?:{_PROVINCE_NAMES})")
# After the house number: an estate or building name (may hold Latin letters: SOHO现代城), then building/unit/room.
_RIGHT = re.compile(
    rf"(?: ?(?:{_PN}|[A-Za-z]){{1,12}}?(?:{_ESTATE}|(?={_UNIT})))?(?: ?{_UNIT})*"
    r"(?: ?[0-9]{1,5}(?:-[0-9]{1,5}){0,3}(?![0-9])(?:室|房)?)?"
)
_ADDR_CUE = re.compile(
    rf"(?:收货|收件|寄件|送货|配送|家庭|详细|联系|公司|邮寄|发货|居住|现)?地址 *(?:[:：]|是|为)? *"
    rf"(?P<v>(?:{_PROVINCE_NAMES})?(?:{_ADMIN}){{1,4}}{_PN}{{0,12}})"
)
_EN_STREET = (
    r"(?:(?:[Ss]treet|[Aa]venue|[Rr]oad|[Bb]oulevard|[Ll]ane|[Dd]rive|[Cc]ourt|[Ww]ay|[Pp]lace|[Tt]errace|[Pp]arkway"
    r"|[Hh]ighway|[Ss]quare|[Cc]ircle|[Cc]rescent|[Cc]lose)|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Pkwy|Hwy|Sq)\.?)"
)
_EN_ADDR = re.compile(
    r"\b\d{1,6}[A-Za-z]?(?:-\d{1,4})? +(?:(?:[NSEW]|North|South|East|West)\.? +)?"
    rf"(?:(?:[A-Z][a-z'’-]*|\d{{1,3}}(?:st|nd|rd|th)) +){{1,4}}{_EN_STREET}(?![A-Za-z])"
    r"(?:,? *(?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Floor|Fl|Flat|#)\.? *#? *[A-Za-z0-9-]+)?"
    r"(?:,? *[A-Z][a-z]+(?: [A-Z][a-z]+){0,2},? *[A-Z]{2} +\d{5}(?:-\d{4})?)?"
    r"|\bP\.? ?O\.? +Box +\d{1,8}\b"
)


def _address_start(t: str, core_start: int, weak_road: bool) -> int | None:
    """Where the address that ends in the road name at core_start begins; None if there is no road name."""
    window = t[max(0, core_start - 36) : core_start]
    m = (_LEFT_ADMIN if weak_road else _LEFT).search(window)
    if m is None or m.end() == m.start():
        return None
    start = core_start - (len(window) - m.start())
    # A known province name inside the run is where the address starts, not the words before it ("快递寄北京市...").
    p = _PROVINCE_IN.search(t, start, core_start)
    return p.start() if p else start


def _find_addresses(t: str) -> Iterator[_Cand]:
    for m in _ROAD_CORE.finditer(t):
        # Bare 道 is also the end of 知道/味道/频道: trust it only after a province, city or district.
        start = _address_start(t, m.start(), weak_road=m.group(1) == "道")
        if start is not None:
            yield "address", start, _RIGHT.match(t, m.end()).end()  # type: ignore[union-attr]
    for m in _ESTATE_CORE.finditer(t):
        left = _LEFT.search(t[max(0, m.start() - 24) : m.start()])
        start = m.start() - (len(left.group()) if left else 0)
        yield "address", start, _RIGHT.match(t, m.end()).end()  # type: ignore[union-attr]
    for m in _ADDR_CUE.finditer(t):
        yield "address", m.start("v"), _RIGHT.match(t, m.end()).end()  # type: ignore[union-attr]
    yield from (("address", m.start(), m.end()) for m in _EN_ADDR.finditer(t))


# ----------------------------------------------------------------------------- names
_NAME_STOP = "的和与及或是在了吗呢吧啊呀要需请您你我他她它们电手地收填写改修不没也都还有无就信栏一号姓名这那先女"
_ZH_NAME = rf"(?:(?!先生|女士|小姐|信息)[{_CJK}·](?<![{_NAME_STOP}])){{2,4}}"
_EN_NAME = r"[A-Z][a-z]+(?:[ '-][A-Z][a-z]+){0,3}"
_NAME = re.compile(
    rf"(?:收件人|收货人|联系人(?!工)|寄件人|提货人|姓名|名字|真实姓名|户名|持卡人|开户人|我叫) *(?:[:：]|是|为|叫)? *"
    rf"(?P<v>{_ZH_NAME}|{_EN_NAME})"
    r"|(?<![Pp]roduct )(?<![Ii]tem )(?<![Ss]hop )(?<![Ss]tore )(?<![Bb]rand )(?<![Cc]ompany )(?<![Ff]ile )"
    r"\b(?:[Nn]ame|[Ff]ull [Nn]ame|[Rr]ecipient|[Cc]onsignee|[Cc]ontact(?: [Pp]erson)?|[Aa]ddressee|[Cc]ardholder)"
    rf" *[:：] *(?P<w>{_EN_NAME}|{_ZH_NAME})"
    rf"|\b[Mm]y name is (?P<x>{_EN_NAME})"
)


def _find_names(t: str) -> Iterator[_Cand]:
    for m in _NAME.finditer(t):
        group = next(g for g in ("v", "w", "x") if m.group(g) is not None)
        yield "name", m.start(group), m.end(group)


_FINDERS = {
    "id_card": _find_ids,
    "bank_card": _find_cards,
    "email": _find_emails,
    "phone": _find_phones,
    "address": _find_addresses,
    "name": _find_names,
}

# What each finder's patterns cannot match without. Most text (every clause of every streamed answer) has none of
# it, and one search is far cheaper than running the finders. Widen these whenever a finder's patterns change.
_NEEDS: dict[str, re.Pattern[str]] = {
    "id_card": re.compile(r"\d"),
    "bank_card": re.compile(r"\d"),
    "email": re.compile("@"),
    "phone": re.compile(r"\d"),
    "address": re.compile(r"\d|[号栋幢座单楼层室户房]|地址"),
    "name": re.compile(r"[人名叫]|ame|ecipient|onsignee|ontact|ddressee|ardholder"),
}


# ----------------------------------------------------------------------------- not personal
_ID_TOKEN = r"[A-Za-z0-9][A-Za-z0-9\-]*"
_ORDER_CUE = re.compile(
    r"(?:(?:订单|运单|快递单|物流单|退货单|退款单|售后单|工单|包裹|发票)(?:编号|号码|号)?|单号|快递号|物流号"
    r"|(?i:\b(?:order|tracking|waybill|shipment|parcel)\b(?: *(?:no\.?|number|num|id|code|#))?(?: +is)?))"
    rf"[ :#是为]*(?P<tok>{_ID_TOKEN})",
    re.A,
)
_CHAIN = re.compile(rf" *(?:[,、/;]|和|及|与|and) *({_ID_TOKEN})", re.A)
_NOT_PII = re.compile(
    "|".join(
        [
            # carrier-prefixed tracking numbers, also written with a space: ZTO 73100012345678
            rf"\b(?:SF|YT|YTO|ZTO|STO|YD|JT|JD|JDV|EMS|DBL|DPK|UPS|DHL|HTKY)[ \-]?\d{{8,}}{_NA}",
            r"(?:型号|货号|款号|商品编号|商品编码|编码|条码|条形码"
            r"|(?i:\bSKU|\bitem *(?:no\.?|#)|\bmodel(?: *(?:no\.?|number|#))?|\bpart *(?:no\.?|number|#)))"
            rf"[ :#\-是为]*{_ID_TOKEN}",
            r"\b[A-Z]{2,}-[A-Z0-9-]+\b",  # product codes such as AB-12345
            r"[¥￥$€£] ?\d[\d,]*(?:\.\d+)?|(?i:\b(?:RMB|CNY|USD|US\$|EUR) ?\d[\d,]*(?:\.\d+)?)",
            r"\d[\d,]*(?:\.\d+)? *(?:元|块钱|块|角|毛|美元|美金|欧元|英镑|港币|(?i:RMB|CNY|USD|EUR|yuan|dollars?)\b)",
            rf"{_NB}\d{{4}}[-/.年]\d{{1,2}}[-/.月]\d{{1,2}}日?{_NA}",
            rf"{_NB}(?:19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]){_NA}",
            rf"{_NB}\d{{1,2}}月\d{{1,2}}[日号]|{_NB}\d{{1,2}}:\d{{2}}(?::\d{{2}})?{_NA}|{_NB}\d{{1,2}}/\d{{1,2}}/\d{{2,4}}{_NA}",
        ]
    ),
    re.A,
)


def _cue_tokens(t: str) -> Iterator[tuple[int, int]]:
    """Order and tracking numbers named by a cue, plus list continuations of the same shape ("订单号 A1、A2")."""
    for m in _ORDER_CUE.finditer(t):
        tok, end = m.group("tok"), m.end()
        yield m.start("tok"), end
        while (nxt := _CHAIN.match(t, end)) and _same_shape(tok, nxt.group(1)):
            yield nxt.start(1), nxt.end(1)
            end = nxt.end()


def _same_shape(a: str, b: str) -> bool:
    return len(a) == len(b) and re.match(r"[A-Za-z]*", a).group() == re.match(r"[A-Za-z]*", b).group()  # type: ignore[union-attr]


def _protected(t: str) -> list[tuple[int, int]]:
    return [*_cue_tokens(t), *((m.start(), m.end()) for m in _NOT_PII.finditer(t))]


def _blocked(c: _Cand, protected: list[tuple[int, int]]) -> bool:
    """A candidate touching a protected span is dropped, unless that span lies strictly inside it.

    "订单号 110105199003071234" is an order number even if it would pass as an ID; but the date 19900307 inside a
    spaced-out ID "110105 19900307 1234" does not make the ID a date.
    """
    _, s, e = c
    return any(ps < e and s < pe and not (s <= ps and pe <= e and pe - ps < e - s) for ps, pe in protected)


def _resolve(cands: list[_Cand]) -> list[_Cand]:
    """Keep non-overlapping candidates: the longest first, ties to the more specific kind."""
    rank: dict[str, int] = {k: i for i, k in enumerate(ALL_KINDS)}
    chosen: list[_Cand] = []
    for c in sorted(set(cands), key=lambda c: (c[1] - c[2], rank[c[0]], c[1])):
        if c[2] > c[1] and all(c[2] <= o[1] or o[2] <= c[1] for o in chosen):
            chosen.append(c)
    return sorted(chosen, key=lambda c: c[1])


# ----------------------------------------------------------------------------- public API
def find_pii(text: str, kinds: Iterable[Kind] = ALL_KINDS) -> list[Span]:
    """Personal data in `text`, in order of position, without overlaps."""
    wanted = set(kinds)
    t = text.translate(_FULLWIDTH)
    kinds_here = [k for k in ALL_KINDS if k in wanted and _NEEDS[k].search(t)]
    cands = [c for kind in kinds_here for c in _FINDERS[kind](t)]
    if not cands:
        return []
    protected = _protected(t)
    kept = _resolve([c for c in cands if not _blocked(c, protected)])
    return [Span(k, s, e, text[s:e]) for k, s, e in kept]  # type: ignore[arg-type]
