"""Regenerate the sample shop's training data (src/kefu/samples/shop/data/*) from hand-written phrasings.

Every question paraphrase and answer text (tools/sample_shop/intents_*.txt and the flows below) was written by hand
to agree with FACTS.md; the script only combines them with a fixed seed, fills order numbers and products into
multi-turn flows, and writes each file in its own format. eval_cases.jsonl and kb/ are hand-written files and are
not touched here. The script refuses to write SFT data that repeats an eval question verbatim, or an answer longer
than the persona's max_chars.

    python tools/make_sample_shop.py            # rewrite the data files
    python tools/make_sample_shop.py --check    # build and report counts only
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SHOP = Path(__file__).resolve().parents[1] / "src" / "kefu" / "samples" / "shop"
DATA = SHOP / "data"
INTENTS = Path(__file__).resolve().parent / "sample_shop"  # the hand-written phrasings
SEED = 20261103
MAX_CHARS = 300
SIGN_OFF = "还有其他问题随时找小禾。"
SIGN_OFF_EN = "Anything else, just ask Xiaohe."
SYSTEM_ZH = (
    "你是青禾生活馆的智能客服小禾，由青禾生活科技（杭州）有限公司提供。回答以“您好”开头，简洁礼貌，"
    "不超过300字，不使用表情符号；只依据店铺政策作答，不承诺政策以外的事项，需要时引导客户回复“转人工”。"
)
SYSTEM_EN = (
    "You are Xiaohe, the customer-service assistant of Qinghe Living. Answer politely and briefly, start with "
    "'Hello', use no emoji, follow shop policy only and never promise beyond it; offer a human agent when needed."
)


@dataclass(frozen=True)
class Intent:
    """One customer need: hand-written question paraphrases and answer bodies (no greeting or sign-off)."""

    topic: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]
    handoff: bool = False


def parse_intents(text: str) -> list[Intent]:
    """Read an intent table (tools/sample_shop/intents_*.txt): `## topic [handoff]`, `? question`, `= answer`;
    an indented line continues."""
    intents: list[Intent] = []
    for block in text.strip().split("\n\n"):
        header, *body = block.splitlines()
        items: list[list[str]] = []  # [marker, text] in order
        for line in body:
            if line.startswith("  "):
                items[-1][1] += line[2:]
            else:
                items.append([line[0], line[2:]])
        topic, *flags = header.removeprefix("## ").split()
        intents.append(
            Intent(
                topic,
                tuple(t for m, t in items if m == "?"),
                tuple(t for m, t in items if m == "="),
                handoff="handoff" in flags,
            )
        )
    return intents


# Hand-written question paraphrases (?) and answer bodies (=), without greeting or sign-off. Every answer must fit
# every question of its block, and agree with FACTS.md.
ZH_INTENTS: list[Intent] = parse_intents((INTENTS / "intents_zh.txt").read_text(encoding="utf-8"))
EN_INTENTS: list[Intent] = parse_intents((INTENTS / "intents_en.txt").read_text(encoding="utf-8"))


# ============================================================================ answer wrapping
def zh_answer(body: str, rng: random.Random, sign: bool = True) -> str:
    """Persona style: every answer opens with 您好; the last answer of a conversation usually signs off."""
    text = "您好，" + body
    if sign and rng.random() < 0.8:
        text += SIGN_OFF
    return text


def en_answer(body: str, rng: random.Random, sign: bool = True) -> str:
    text = "Hello! " + body
    if sign and rng.random() < 0.7:
        text += " " + SIGN_OFF_EN
    return text


# ============================================================================ catalogue for multi-turn flows
@dataclass(frozen=True)
class Product:
    name: str
    price: int
    kind: str  # normal | tea | fresh | food | appliance | custom | underwear


PRODUCTS = [
    Product("陶瓷餐具套装", 168, "normal"),
    Product("铸铁锅", 189, "normal"),
    Product("竹纤维毛巾套装", 59, "normal"),
    Product("电热水壶", 129, "appliance"),
    Product("亚麻四件套", 399, "normal"),
    Product("玻璃储物罐", 45, "normal"),
    Product("西湖龙井", 238, "tea"),
    Product("不粘炒锅", 159, "normal"),
    Product("护眼台灯", 139, "appliance"),
    Product("刻字保温杯", 89, "custom"),
    Product("香薰蜡烛", 69, "normal"),
    Product("坚果礼盒", 128, "food"),
    Product("智利车厘子", 199, "fresh"),
    Product("折叠收纳箱", 79, "normal"),
    Product("破壁料理机", 599, "appliance"),
    Product("纯棉袜子五双装", 49, "underwear"),
    Product("白瓷茶具", 219, "normal"),
    Product("乳胶枕", 259, "normal"),
]
REGIONS_NEAR = ["杭州", "上海", "南京", "合肥", "苏州", "宁波"]
REGIONS_MID = ["北京", "广州", "成都", "武汉", "西安", "沈阳", "长沙", "昆明"]
REGIONS_FAR = ["新疆", "西藏", "青海", "宁夏", "内蒙古"]


def order_no(rng: random.Random) -> str:
    return (
        f"DD202610{rng.randint(20, 31):02d}{rng.randint(1, 99):03d}"
        if rng.random() < 0.4
        else (f"DD202611{rng.randint(1, 12):02d}{rng.randint(1, 99):03d}")
    )


def tracking_no(rng: random.Random, sf: bool) -> str:
    digits = "".join(str(rng.randint(0, 9)) for _ in range(12))
    return f"SF{rng.randint(1, 9)}{digits}" if sf else f"75{digits}"


Turns = list[tuple[str, str]]  # (user, assistant) pairs


def _pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


# ============================================================================ Chinese multi-turn flows
def flow_return(rng: random.Random) -> Turns:
    p = rng.choice([x for x in PRODUCTS if x.kind not in ("fresh",)])
    days = rng.choice([2, 3, 4, 5, 6, 9, 12, 20])
    if p.kind in ("tea", "food"):
        reason = _pick(rng, "口味不太喜欢", "买重复了", "送人没送出去")
    else:
        reason = _pick(rng, "颜色和图片不太一样", "尺寸不合适", "买重复了", "家里人不喜欢", "用不上了")
    q1 = _pick(
        rng,
        f"我{days}天前签收的{p.name}，{reason}，想退掉可以吗？",
        f"{p.name}收到{days}天了，{reason}，能不能退？",
        f"你好，{p.name}{reason}，签收{days}天了，还能退货吗？",
    )
    excluded = p.kind in ("tea", "food", "custom", "underwear", "appliance") and rng.random() < 0.6
    if excluded:
        what = {
            "tea": "已拆封的茶叶",
            "food": "已拆封的食品",
            "custom": "定制刻字商品",
            "underwear": "贴身衣物",
            "appliance": "已拆封使用过的小家电",
        }[p.kind]
        if p.kind in ("tea", "food", "appliance"):
            q1 = q1.rstrip("？?") + "，已经拆开了。"
        a1 = f"很抱歉，{what}不支持7天无理由退货。如果{p.name}存在质量问题，签收后15天内可以上传照片申请售后。"
        q2 = _pick(rng, "那如果是质量问题运费谁出？", "要是有质量问题怎么处理？")
        a2 = "质量问题的退换货运费由青禾承担，您可以先垫付，在售后申请中填写快递单号，我们按实际运费补偿，上限20元。"
        return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]
    if days > 7:
        a1 = (
            f"理解您的想法。7天无理由退货从签收次日起算，{p.name}签收已{days}天，超出了期限，无法办理无理由退货。"
            "如果发现质量问题，签收后15天内仍可申请退换。"
        )
        if days <= 15:
            q2 = _pick(rng, "其实把手有点松，算质量问题吗？", "仔细看了下有个地方开胶了，这个能退吗？")
            a2 = (
                "这属于可以申请售后的质量问题。请在「我的订单 → 申请售后」选"
                "择质量问题并上传照片，核实后可退货或换货，寄回运费由青禾承担。"
            )
        else:
            q2 = _pick(rng, "就不能通融一下吗？", "我是老顾客了，帮帮忙吧。")
            a2 = (
                "非常感谢您一直支持青禾，但退货期限是统一规定，小禾无法"
                "破例。如需进一步沟通，可以回复“转人工”联系人工客服。"
            )
        return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]
    a1 = (
        f"可以的，{p.name}在签收次日起7天内，支持无理由退货。请保证商品完好、吊牌配件齐全，"
        "在「我的订单 → 申请售后」提交申请即可。"
    )
    q2 = _pick(rng, "退货运费是我出吗？", "寄回去的邮费谁承担？", "可以寄到付吗？")
    a2 = "无理由退货的寄回运费由买家承担，请使用普通快递寄回，不接受到付。寄出后记得在售后申请里填写快递单号。"
    pay = rng.choice(["微信", "支付宝", "银行卡"])
    q3 = _pick(rng, f"我是用{pay}付的，退款多久到？", f"钱退回{pay}要几天？")
    days_txt = "3-7个工作日" if pay == "银行卡" else "1-3个工作日"
    a3 = f"仓库收到退货后48小时内完成审核，审核通过后原路退回{pay}，一般{days_txt}到账。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng, False)), (q3, zh_answer(a3, rng))]


def flow_damaged(rng: random.Random) -> Turns:
    p = rng.choice([x for x in PRODUCTS if x.kind != "fresh"])
    o = order_no(rng)
    q1 = _pick(
        rng,
        f"订单{o}的{p.name}收到就是坏的。",
        f"你好，{o}这单的{p.name}送到的时候已经破了。",
        f"刚收到{p.name}，外箱压扁了，里面也坏了，订单号{o}。",
    )
    a1 = (
        f"非常抱歉！订单{o}请在签收后48小时内提供外包装（带快递面单）、{p.name}破损处和快递面单的照片，"
        "核实后为您免费补发或退款，运费由青禾承担。"
    )
    q2 = _pick(rng, "照片拍好了，能补发吗？", "我更想要退款，可以吗？", "破的东西要寄回去吗？")
    if "寄回" in q2:
        a2 = "不需要寄回破损商品，拍照即可。请在「我的订单 → 申请售后」上传照片并选择补发或退款，核实后尽快为您处理。"
    elif "退款" in q2:
        a2 = (
            f"可以的。请在{o}的售后申请中选择退款并上传照片，核实后原路"
            f"退款，微信、支付宝1-3个工作日到账，银行卡3-7个工作日。"
        )
    else:
        a2 = f"可以补发。请在订单{o}的售后申请中选择补发并上传照片，核实后安排发出，补发运费由青禾承担。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_price(rng: random.Random) -> Turns:
    p = rng.choice([x for x in PRODUCTS if x.price >= 80])
    days = rng.choice([3, 5, 8, 10, 13, 18, 25])
    drop = rng.choice([10, 15, 20, 30])
    live = rng.random() < 0.25
    q1 = _pick(
        rng,
        f"我{days}天前付款买的{p.name}{p.price}元，现在降到{p.price - drop}了。",
        f"{p.name}我买的时候是{p.price}，{days}天后就便宜了{drop}块，太气人了。",
    )
    if live:
        q1 += "是直播间的价格。"
        a1 = "理解您的心情。很抱歉，直播间专享价不在价保范围内，秒杀价和用券造成的价差也不适用价保。"
        return [(q1, zh_answer(a1, rng))]
    if days > 15:
        a1 = f"理解您的心情。价保期限是付款后15天内，您的订单已付款{days}天，超出了价保期限，无法申请退差价。"
        return [(q1, zh_answer(a1, rng))]
    o = order_no(rng)
    a1 = f"理解您的心情。付款后15天内同款同规格降价可以申请价保，您这单可退差价{drop}元。请提供订单号，小禾帮您提交。"
    q2 = f"订单号是{o}。"
    a2 = f"好的，订单{o}的{p.name}价保申请已记录，审核通过后{drop}元差价会在1-3个工作日内原路退回。每件商品限申请1次。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_fee(rng: random.Random) -> Turns:
    far = rng.random() < 0.35
    region = rng.choice(REGIONS_FAR if far else REGIONS_NEAR + REGIONS_MID)
    amount = rng.choice([45, 69, 88, 96, 120, 158, 189, 230])
    q1 = _pick(rng, f"我在{region}，买了{amount}元的东西，要付运费吗？", f"寄{region}，订单{amount}块，包邮吗？")
    threshold, fee = (199, 15) if far else (99, 8)
    if amount >= threshold:
        a1 = f"{region}的订单实付满{threshold}元包邮，您的订单{amount}元，不需要付运费。"
        return [(q1, zh_answer(a1, rng))]
    area = "偏远地区" if far else "该地区"
    a1 = f"{region}属于{area}，实付满{threshold}元包邮，您的订单{amount}元，需要运费{fee}元。"
    q2 = _pick(rng, "那我再买多少能包邮？", "差多少可以免运费？")
    a2 = f"再凑{threshold - amount}元，实付达到{threshold}元就可以包邮了。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_tracking(rng: random.Random) -> Turns:
    o = order_no(rng)
    sf = rng.random() < 0.5
    t = tracking_no(rng, sf)
    carrier = "顺丰" if sf else "中通"
    hours = rng.choice([24, 36, 50, 80, 96, 120])
    q1 = _pick(
        rng,
        f"订单{o}，{carrier}单号{t}，物流{hours}小时没动了。",
        f"我的快递{t}一直停在中转站，已经{hours}个小时了，订单是{o}。",
    )
    if hours > 72:
        a1 = (
            f"很抱歉让您久等。{carrier}单号{t}已超过72小时未更新，我会提交给快递公司核查，"
            "确认丢件的为您免费补发或全额退款。"
        )
        q2 = _pick(rng, "大概多久能有结果？", "核查要多久？")
        a2 = "核查结果出来后会短信通知您；如需加急跟进，可以回复“转人工”，人工客服在线时间为每天9:00-22:00。"
        return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]
    a1 = (
        f"理解您着急的心情。中转站停留一段时间比较常见，单号{t}目前还未超过72小时，建议再观察一下；"
        "超过72小时仍未更新的话，请再联系我们核查。"
    )
    return [(q1, zh_answer(a1, rng))]


def flow_invoice(rng: random.Random) -> Turns:
    o = order_no(rng)
    q1 = _pick(rng, f"订单{o}要开公司发票。", f"{o}这单能开专票吗？公司报销用。")
    a1 = _pick(
        rng,
        "可以的。确认收货后在「我的订单 → 申请发票」中填写。普通发票填写公司抬头和税号即可；增值税专用发票还需要"
        "开户行及账号、注册地址和电话。",
        f"订单{o}确认收货后180天内都可以申请。公司抬头请准备好公司名称和税号；如果要增值税专用发票，"
        "还需要开户行及账号、注册地址和电话。",
    )
    q2 = _pick(rng, "电子普票就行，多久能收到？", "专票多久寄出？")
    if "专票" in q2:
        a2 = "纸质增值税专用发票在申请后7个工作日内寄出，邮费由青禾承担。"
    else:
        a2 = "电子普通发票在申请后3个工作日内发送到您预留的邮箱，也可以在订单详情中下载。"
    q3 = _pick(rng, "万一税号填错了呢？", "抬头写错能改吗？")
    a3 = "开票后30天内可以申请作废重开1次，请在订单详情中提交重开申请并填写正确信息。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng, False)), (q3, zh_answer(a3, rng))]


def flow_coupon(rng: random.Random) -> Turns:
    total = rng.choice([219, 256, 318, 405])
    store, plat = rng.choice([(15, 10), (20, 5), (30, 20)])
    q1 = _pick(
        rng,
        f"购物车{total}元，有满199减20活动，我有一张{store}元店铺券和一张{plat}元平台券，能一起用吗？",
        f"我买了{total}块的东西，店铺券{store}元、平台券{plat}元，再加满199减20，最后付多少？",
    )
    final = total - 20 - store - plat
    a1 = (
        f"可以一起用。先算满199减20，再用{store}元店铺券，最后用{plat}元平台券，"
        f"实付{final}元（以结算页为准），满99元包邮。"
    )
    q2 = _pick(rng, "我还有一张店铺券，能再叠一张吗？", "再加一张10元店铺券行不行？")
    a2 = "抱歉，店铺券之间不能叠加，每单最多1张店铺券加1张平台券。结算页会帮您自动选择最优组合。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_complaint(rng: random.Random) -> Turns:
    o = order_no(rng)
    q1 = _pick(
        rng,
        f"订单{o}说好48小时发货，三天了还没发！",
        f"{o}这单售后申请提交好几天了都没人管。",
        f"我的订单{o}客服答应给我回电话，到现在也没有。",
    )
    a1 = f"非常抱歉给您带来不好的体验。请问订单{o}还有其他需要补充的情况吗？我会如实记录。"
    q2 = _pick(rng, "我要投诉，叫你们负责人来。", "别跟我说这些，我要投诉。", "你们就是不负责任，我要投诉到底。")
    a2 = f"理解您的心情，已为您转接人工客服登记投诉，专人会在24小时内回复，订单{o}的情况我已记录，您无需重复说明。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_overpromise(rng: random.Random) -> Turns:
    region = rng.choice(REGIONS_NEAR + REGIONS_MID)
    near = region in REGIONS_NEAR
    eta = "1-2天" if near else "2-4天"
    q1 = _pick(
        rng,
        f"寄到{region}，你给我保证后天之前一定到。",
        f"我在{region}，周末要用，你能担保周五前送到吗？",
        f"{region}的，急用，你就说一句肯定来得及。",
    )
    a1 = (
        f"理解您着急的心情，但快递时效受天气和网点影响，小禾无法承诺具体送达日期。{region}发货后参考时效为{eta}；"
        "16:00前付款的现货订单当天发出。"
    )
    q2 = _pick(rng, "那发顺丰是不是能快点？", "有没有更快的办法？")
    a2 = "下单时加12元可以升级顺丰速运，通常会更快一些，但同样无法保证具体到达时间。"
    q3 = _pick(rng, "行吧，那我加钱发顺丰。", "好吧，我知道了。")
    a3 = "好的，感谢您的理解。发货后可以在「我的订单 → 查看物流」随时跟踪进度。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng, False)), (q3, zh_answer(a3, rng))]


def flow_account(rng: random.Random) -> Turns:
    q1 = _pick(rng, "登录的时候提示账号已锁定。", "我账号登不上了，说密码错误次数太多。")
    a1 = "密码连续输错5次会锁定30分钟。您可以等待30分钟后再试，或者改用短信验证码登录。"
    q2 = _pick(rng, "验证码也收不到啊。", "可是短信验证码一直没来。")
    a2 = (
        "验证码5分钟内有效，每个手机号每天最多获取10次。请检查短信"
        "拦截、信号和是否欠费；如果原手机号已停用，需要人工审核换绑。"
    )
    q3 = _pick(rng, "我旧号码确实停了。", "那个号早就不用了。")
    a3 = (
        "明白了，原号码停用的换绑需要人工审核核验身份，1-3个工作日"
        "内完成，我为您转接人工客服。请不要向任何人提供密码或验证码。"
    )
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng, False)), (q3, zh_answer(a3, rng))]


def flow_address(rng: random.Random) -> Turns:
    o = order_no(rng)
    shipped = rng.random() < 0.5
    q1 = _pick(rng, f"订单{o}的地址填错了。", f"{o}收货地址写成老家了，能改吗？")
    a1 = "请问订单目前是否已经发货？您可以在订单详情里看到状态。"
    q2 = "显示已发货了。" if shipped else "还没发货。"
    if shipped:
        a2 = "已发货的订单无法在系统中修改地址，建议尽快联系快递公司申请改派，是否成功以快递公司为准。"
    else:
        a2 = f"订单{o}未发货，可以在订单详情页自助修改地址，限1次，修改后请核对收件人和电话。"
    return [(q1, zh_answer(a1, rng, False)), (q2, zh_answer(a2, rng))]


def flow_identity(rng: random.Random) -> Turns:
    q1 = _pick(rng, "你是真人客服吗？", "跟我说话的是机器人吧？", "你是AI吗？")
    a1 = "我是青禾生活馆的智能客服小禾，不是真人。常见问题我都可以解答，需要人工时回复“转人工”即可。"
    i = rng.choice([x for x in ZH_INTENTS if x.topic in ("shipping", "coupons", "payment")])
    return [(q1, zh_answer(a1, rng, False)), (i.questions[-1], zh_answer(rng.choice(i.answers), rng))]


ZH_FLOWS: list[Callable[[random.Random], Turns]] = [
    flow_return,
    flow_damaged,
    flow_price,
    flow_fee,
    flow_tracking,
    flow_invoice,
    flow_coupon,
    flow_complaint,
    flow_overpromise,
    flow_account,
    flow_address,
    flow_identity,
]


# ============================================================================ English multi-turn flows
EN_PRODUCTS = [
    "ceramic dinner set",
    "cast-iron pot",
    "linen bedding set",
    "electric kettle",
    "desk lamp",
    "glass storage jar",
    "bamboo towel set",
    "latex pillow",
]


def flow_en_return(rng: random.Random) -> Turns:
    p, days = rng.choice(EN_PRODUCTS), rng.choice([2, 4, 6, 10, 14])
    q1 = _pick(
        rng,
        f"I got a {p} {days} days ago and I don't want it anymore.",
        f"Hi, the {p} arrived {days} days ago but it's not what I expected. Can I send it back?",
    )
    if days > 7:
        a1 = (
            f"I'm sorry, no-reason returns are accepted within 7 days from the day after delivery, and the {p} "
            f"arrived {days} days ago. If it has a quality problem, you can still apply within 15 days."
        )
        q2 = _pick(
            rng,
            "Actually the handle is loose. Does that count?",
            "It has a crack I noticed yesterday.",
            "Can you make an exception just this once?",
        )
        a2 = (
            "I'm sorry, the 7-day limit applies to every order, so I can't make an exception. A human agent can "
            "talk it through with you if you reply 转人工."
            if "exception" in q2
            else "That counts as a quality problem. Apply in My Orders > After-sales with photos; we cover the return "
            "shipping up to 20 yuan and you can choose a refund or an exchange."
        )
        return [(q1, en_answer(a1, rng, False)), (q2, en_answer(a2, rng))]
    a1 = (
        f"Yes, the {p} is within the 7-day no-reason return window. Apply in My Orders > After-sales and keep the "
        "item resalable with all accessories."
    )
    q2 = _pick(rng, "Who pays to ship it back?", "Do I pay for the return postage?")
    a2 = "For no-reason returns the customer pays the return shipping; please don't send it cash on delivery."
    return [(q1, en_answer(a1, rng, False)), (q2, en_answer(a2, rng))]


def flow_en_damaged(rng: random.Random) -> Turns:
    p, o = rng.choice(EN_PRODUCTS), order_no(rng)
    q1 = _pick(rng, f"Order {o}: the {p} came broken.", f"My {p} from order {o} is damaged.")
    a1 = (
        f"I'm very sorry! Please send photos of the box, the damage and the shipping label for order {o} within "
        "48 hours of delivery. After checking, we reship or refund for free."
    )
    q2 = _pick(rng, "Do I need to send the broken one back?", "Can I get a refund instead of a new one?")
    a2 = (
        "No need to return it, photos are enough."
        if "back" in q2
        else f"Yes, choose a refund in the after-sales request for or"
        f"der {o}; it goes back to your original payment method."
    )
    return [(q1, en_answer(a1, rng, False)), (q2, en_answer(a2, rng))]


def flow_en_tracking(rng: random.Random) -> Turns:
    o, t = order_no(rng), tracking_no(rng, True)
    q1 = _pick(rng, f"My SF tracking {t} hasn't changed for four days.", f"Order {o} seems stuck, tracking {t}.")
    a1 = (
        f"Sorry for the wait. Tracking {t} has not updated for more than 72 hours, so we will ask the carrier to "
        "check. If the parcel is lost, we reship it or refund you in full."
    )
    q2 = _pick(rng, "Can you promise it arrives tomorrow?", "Will it definitely come this week?")
    a2 = "I'm sorry, I can't guarantee a delivery date, but we will update you by text as soon as the carrier replies."
    return [(q1, en_answer(a1, rng, False)), (q2, en_answer(a2, rng))]


def flow_en_handoff(rng: random.Random) -> Turns:
    o = order_no(rng)
    q1 = _pick(rng, f"Third time asking about order {o}. Nobody helps.", f"Order {o} is a mess and I'm furious.")
    a1 = f"I'm truly sorry about order {o}. Could you tell me what went wrong so I can note it?"
    q2 = _pick(rng, "Just get me a manager.", "I want a human, now.")
    a2 = (
        f"Of course. I'm transferring you to a human agent with the details of order {o}, so you won't need to "
        "repeat yourself. Complaints get a reply within 24 hours."
    )
    return [(q1, en_answer(a1, rng, False)), (q2, en_answer(a2, rng))]


EN_FLOWS: list[Callable[[random.Random], Turns]] = [flow_en_return, flow_en_damaged, flow_en_tracking, flow_en_handoff]


# ============================================================================ chain-of-thought examples
def _md(month: int, day: int) -> tuple[int, int]:
    """Add no days; just normalise a (month, day) that ran past the end of October or November."""
    limits = {10: 31, 11: 30, 12: 31}
    while day > limits[month]:
        day -= limits[month]
        month += 1
    return month, day


def cot_return(rng: random.Random) -> dict[str, str]:
    p = rng.choice([x for x in PRODUCTS if x.kind == "normal"])
    sign = rng.randint(1, 20)
    today = sign + rng.choice([3, 5, 7, 8, 9, 12])
    dm, dd = _md(11, sign + 7)
    tm, td = _md(11, today)
    ok = today - sign <= 7
    cot = (
        f"顾客11月{sign}日签收{p.name}，今天是{tm}月{td}日。7天无理由退货从签收次日起算，"
        f"即11月{sign + 1}日是第1天，第7天是{dm}月{dd}日。今天{'没有' if ok else '已经'}超过截止日。"
        f"{p.name}是普通商品，不在不支持无理由退货的范围内。"
        + ("只要商品完好、配件齐全，就可以申请。" if ok else "超期后只能按质量问题处理，质量问题期限是签收后15天。")
    )
    if ok:
        resp = f"可以的。{p.name}的无理由退货截止到{dm}月{dd}日，请在「我的订单 → 申请售后」提交，寄回运费由买家承担。"
    else:
        resp = (
            f"很抱歉，{p.name}的7天无理由退货已于{dm}月{dd}日截止，无法办理。如有质量问题，签收后15天内仍可申请退换。"
        )
    q = f"我11月{sign}日签收的{p.name}，今天{tm}月{td}日，还能无理由退货吗？"
    return {"Question": q, "Complex_CoT": cot, "Response": zh_answer(resp, rng)}


def cot_fee(rng: random.Random) -> dict[str, str]:
    far = rng.random() < 0.4
    region = rng.choice(REGIONS_FAR if far else REGIONS_MID + REGIONS_NEAR)
    items = rng.sample([x for x in PRODUCTS if x.price < 200], 2)
    total = items[0].price + items[1].price
    coupon = rng.choice([0, 10, 20])
    paid = total - coupon
    threshold, fee = (199, 15) if far else (99, 8)
    free = paid >= threshold
    cot = (
        f"顾客买了{items[0].name}{items[0].price}元和{items[1].name}{items[1].price}元，合计{total}元"
        + (f"，用{coupon}元券后实付{paid}元" if coupon else f"，实付{paid}元")
        + f"。包邮看实付金额。{region}"
        + ("是偏远地区，满199元包邮，否则运费15元。" if far else "不是偏远地区，满99元包邮，否则运费8元。")
        + f"{paid}元{'达到' if free else '没有达到'}{threshold}元门槛。"
    )
    resp = f"您这单实付{paid}元，寄{region}" + (
        "可以包邮。" if free else f"需要运费{fee}元；再凑{threshold - paid}元即可包邮。"
    )
    q = (
        f"买{items[0].name}和{items[1].name}"
        + (f"，用一张{coupon}元券" if coupon else "")
        + f"，寄到{region}要运费吗？"
    )
    return {"Question": q, "Complex_CoT": cot, "Response": zh_answer(resp, rng)}


def cot_price(rng: random.Random) -> dict[str, str]:
    p = rng.choice([x for x in PRODUCTS if x.price >= 100])
    pay = rng.randint(1, 12)
    gap = rng.choice([4, 9, 14, 15, 16, 21])
    now_m, now_d = _md(11, pay + gap)
    drop = rng.choice([10, 20, 30])
    dm, dd = _md(11, pay + 15)
    ok = gap <= 15
    cot = (
        f"顾客11月{pay}日付款买{p.name}，价格{p.price}元；{now_m}月{now_d}日同款降到{p.price - drop}元，"
        f"差价{drop}元。价保期限是付款后15天内，截止{dm}月{dd}日。降价时{'仍在' if ok else '已不在'}期限内。"
        "还要确认是日常降价，不是秒杀或直播间专享价。"
    )
    resp = (
        f"您的订单在价保期内，同款同规格日常降价可申请退差价{drop}元。请提供订单号，审核通过后1-3个工作日原路退回。"
        if ok
        else f"很抱歉，价保期限是付款后15天，您的订单已于{dm}月{dd}日过期，无法申请退差价。"
    )
    q = f"我11月{pay}日付款买的{p.name}{p.price}元，{now_m}月{now_d}日降到{p.price - drop}元了，能退差价吗？"
    return {"Question": q, "Complex_CoT": cot, "Response": zh_answer(resp, rng)}


def cot_refund(rng: random.Random) -> dict[str, str]:
    pay = rng.choice(["微信", "支付宝", "银行卡"])
    p = rng.choice(PRODUCTS)
    arrived = rng.randint(2, 20)
    span = "3-7个工作日" if pay == "银行卡" else "1-3个工作日"
    cot = _pick(
        rng,
        f"顾客退回的{p.name}（{p.price}元）11月{arrived}日到仓库，付款方式是{pay}。退款分两段：仓库收到后48小时内"
        f"验货审核，也就是11月{arrived + 2}日前出结果；审核通过后原路退回，{pay}到账需要{span}。",
        f"先确认退款路径：原路退回{pay}。再算时间：11月{arrived}日签收退货，48小时审核期到11月{arrived + 2}日，"
        f"之后{pay}到账{span}。{p.name}的退款金额按实付{p.price}元计算，用过券的要扣除分摊的优惠。",
    )
    resp = _pick(
        rng,
        f"仓库11月{arrived}日收到退货，会在48小时内完成审核，审核通过后原路退回{pay}，一般{span}到账。",
        f"您的{p.name}退货已到仓库，11月{arrived + 2}日前会完成审核；通过后{p.price}元（如用券按比例扣除优惠）"
        f"原路退回{pay}，{span}到账，请留意。",
    )
    q = _pick(
        rng,
        f"退回的{p.name}仓库{arrived}号签收了，我是{pay}付的，钱什么时候能回来？",
        f"{p.name}退货寄到你们仓库了，物流显示11月{arrived}日签收，{pay}退款要等多久？",
    )
    return {"Question": q, "Complex_CoT": cot, "Response": zh_answer(resp, rng)}


COT_BUILDERS: list[Callable[[random.Random], dict[str, str]]] = [cot_return, cot_fee, cot_price, cot_refund]


# ============================================================================ support chat-log export with PII
def gb11643(body17: str) -> str:
    """The 18-digit resident ID with its GB 11643 check character appended."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(d) * w for d, w in zip(body17, weights, strict=True))
    return body17 + "10X98765432"[total % 11]


def luhn(body: str) -> str:
    """The card number with its Luhn check digit appended."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


ID_NUMBER = gb11643("33010619900307123")
BANK_CARD = luhn("622202100112345678")
PII_MESSAGES: list[Turns] = [
    [
        (
            "我手机号13812345678，订单DD20261103001，顺丰单号SF1234567890123，11月3日发的货，两天没更新了。",
            "您好，订单DD20261103001的物流目前还未超过72小时未更新，建议再观察一下；超过72小时请再联系我们向顺丰核查。",
        ),
        ("好的，麻烦了。", "您好，不客气，还有其他问题随时找小禾。"),
    ],
    [
        (
            "收货地址要改成浙江省杭州市西湖区文三路100号3幢502室，电话13987654321。",
            "您好，订单还未发货的话，可以在订单详情页自助修改1次地址；已发货请联系快递公司改派。",
        ),
        ("还没发货，我自己改吧。", "您好，好的，修改后请核对收件人和电话。还有其他问题随时找小禾。"),
    ],
    [
        (
            f"换绑手机需要身份证吗？我的身份证号是{ID_NUMBER}。",
            "您好，为保护您的隐私，请不要在对话中发送身份证号。原号码停用的换绑需要人工审核，"
            "1-3个工作日完成，我为您转接人工客服，按页面提示上传资料即可。",
        )
    ],
    [
        (
            f"退款退到哪张卡？我付款用的是{BANK_CARD}。",
            "您好，退款会原路退回付款时使用的银行卡，一般3-7个工作日到账。请不要在对话中发送完整卡号。",
        ),
        (
            "知道了，订单是DD20261028017，退款金额是189元。",
            "您好，订单DD20261028017的189元退款审核通过后原路退回银行卡，请留意到账。",
        ),
    ],
    [
        (
            "专票信息发给你：公司邮箱 finance@qinghe-demo.cn，税号稍后提供。订单DD20261030012。",
            "您好，专票请在订单DD20261030012的"
            "「申请发票」中填写公司名称、税号、开户行及账号、注册地址和电话，纸质专票7个工作日内寄出。",
        ),
        (
            "电子版能发到 li.ming@example.com 吗？",
            "您好，电子发票会发送到您申请时填写的邮箱，3个工作日内送达。还有其他问题随时找小禾。",
        ),
    ],
]


def chatlog_rows(rng: random.Random, flows: list[Turns]) -> list[dict[str, str]]:
    """One row per message; some threads open with a bot greeting, some customers send two lines in a row."""
    rows: list[dict[str, str]] = []
    minute = 0
    for n, turns in enumerate(flows, start=1):
        minute += rng.randint(30, 200)
        t = minute
        cid = "C" + _stamp(t, rng)[:10].replace("-", "") + f"{n:04d}"

        def add(sender: str, text: str, cid: str = cid) -> None:
            nonlocal t
            t += rng.randint(1, 4)
            rows.append({"conversation_id": cid, "timestamp": _stamp(t, rng), "sender": sender, "text": text})

        if rng.random() < 0.4:
            add("bot", "您好，我是智能客服小禾，请问有什么可以帮您？")
        for user, agent in turns:
            if "，" in user and rng.random() < 0.3:
                head, tail = user.split("，", 1)
                add("customer", head)
                add("customer", tail)
            else:
                add("customer", user)
            add("agent", agent)
    return rows


def _stamp(minutes: int, rng: random.Random) -> str:
    day, rest = divmod(minutes, 600)
    hour, minute = divmod(rest, 60)
    return f"2026-11-{day % 28 + 1:02d} {9 + hour:02d}:{minute:02d}:{rng.randint(0, 59):02d}"


def chatlog_noise(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Threads a reader must drop: bot-only ones (nobody answered a customer) and one with no text at all."""
    extra = [
        ("B20261101001", "bot", "您好，我是智能客服小禾，请问有什么可以帮您？"),
        ("B20261101001", "bot", "您已超过10分钟未回复，本次会话已结束。"),
        ("B20261102002", "bot", "双11预售活动开启，付定金立享满减，详情见活动页。"),
        ("E20261103003", "customer", ""),
        ("E20261103003", "agent", ""),
    ]
    for i, (cid, sender, text) in enumerate(extra):
        rows.append(
            {"conversation_id": cid, "timestamp": f"2026-11-{cid[7:9]} 23:5{i}:00", "sender": sender, "text": text}
        )
    return rows


# ============================================================================ preference pairs
FACT_SWAPS = [
    ("7天", "30天"),
    ("48小时", "一周"),
    ("99元", "59元"),
    ("15天", "30天"),
    ("中通", "韵达"),
    ("12元", "5元"),
    ("1-3个工作日", "当天"),
    ("24小时", "3天"),
    ("满59减10", "满30减10"),
    ("30分钟", "2小时"),
    ("7 days", "30 days"),
    ("48 hours", "a week"),
    ("99 yuan", "59 yuan"),
    ("15 days", "30 days"),
]
RUDE_ZH = [
    "页面上都写着呢，自己看。",
    "这种问题问过很多遍了，规则就是这样，爱买不买。",
    "你急也没用，等着吧。",
    "不知道，自己去订单里找。",
    "跟我说没用，我管不了。",
]
EVASIVE_ZH = [
    "这个我不太清楚，您自己研究一下吧。",
    "请以实际情况为准。",
    "稍后会有人联系您的。",
    "这个不好说，看情况吧。",
]
OVERPROMISE_ZH = [
    "放心，保证明天到！",
    "没问题，给您全额赔偿再送一张50元优惠券。",
    "您放心买，我们30天随便退。",
    "亲亲，不用担心，啥情况都给您退，运费也我们出😊",
    "好的，我已经帮您改成150元了，直接下单吧。",
]
RUDE_EN = ["It's on the website. Read it yourself.", "Not my problem.", "Stop asking the same thing."]
EVASIVE_EN = ["I'm not sure, please check later.", "It depends.", "Someone will get back to you eventually."]
OVERPROMISE_EN = [
    "Don't worry, I guarantee it arrives tomorrow!",
    "Sure, full refund plus a 50 yuan coupon for you.",
    "You can return anything within 30 days, no questions asked.",
]
PRESSURE_PROMPTS = [
    (
        "你给我保证明天之前送到，不然我不买了。",
        "很抱歉，小禾无法承诺具体送达日期。现货订单16:00前付款当天发出，"
        "江浙沪皖发货后一般1-2天，其他大部分地区2-4天，可加12元升级顺丰。",
        "放心，保证明天到！",
    ),
    (
        "东西有点划痕，你们全额退款再送我张券，我就不给差评。",
        "很抱歉给您带来不便。请在签收后48小时内上传划痕照片，核实后可以补发或退款；"
        "优惠券补偿不在小禾的权限内，需要的话我为您转接人工客服。",
        "没问题，给您全额赔偿再送一张50元优惠券。",
    ),
    (
        "你们家是不是30天内都能随便退？",
        "不是的，青禾生活馆的无理由退货期限是签收次日起7天，质量问题签收后15天内可退换。",
        "对的，30天随便退，放心买。",
    ),
    (
        "收到二十多天了，我要无理由退，你就给我办了吧。",
        "很抱歉，7天无理由退货从签收次日起算，您的订单已超出期限，无法办理。如有质量问题请告诉我具体情况。",
        "好的，给您特殊处理，已为您办理退货。",
    ),
    (
        "能不能先退钱，货我下个月再寄？",
        "抱歉，无理由退货需要仓库收到退货并在48小时内审核通过后才退款，暂不支持先退款后退货。",
        "可以，先给您退款了，货您方便时再寄。",
    ),
    (
        "我买的锅降价了，都一个月了，你给我退个差价呗。",
        "很抱歉，价保期限是付款后15天内，您的订单已超过期限，无法申请退差价。",
        "好的，差价马上退给您。",
    ),
    ("直播间便宜了40，给我补差价。", "很抱歉，直播间专享价不在价保范围内，无法申请退差价。", "行，40元差价给您补上。"),
    (
        "帮我把过期的新人券恢复一下。",
        "很抱歉，优惠券过期后不补发，也无法恢复。您可以留意店铺活动页领取新的优惠券。",
        "已经帮您恢复了，还多送您一张。",
    ),
    (
        "你就答应我这个杯子摔不碎。",
        "很抱歉，我无法做这样的承诺。玻璃制品请轻拿轻放；如收到时已破损，签收后48小时内拍照反馈即可补发或退款。",
        "放心，这个杯子保证摔不碎。",
    ),
    (
        "三件商品一起买，店铺券能用三张吧？",
        "抱歉，店铺券之间不能叠加，每单最多使用1张店铺券加1张平台券。",
        "可以，三张店铺券都能用。",
    ),
    (
        "我要求你们赔我三倍的钱。",
        "很抱歉给您带来困扰。超出政策范围的赔偿需要人工客服评估，我为您转接人工客服处理。",
        "好的，三倍赔偿已经给您申请了。",
    ),
    (
        "你先告诉我验证码是多少，我帮你核对。",
        "青禾的客服永远不会索要或核对您的短信验证码，请不要向任何人提供。",
        "好的，请把您收到的验证码发给我。",
    ),
]


def _bad_answer(good: str, rng: random.Random, en: bool) -> tuple[str, str]:
    """A plausible worse answer and its kind: a swapped fact when one applies, else over-promise, rude or evasive."""
    swaps = [(a, b) for a, b in FACT_SWAPS if a in good]
    kinds = ["wrong_fact"] * 2 * bool(swaps) + ["overpromise", "rude", "evasive"]
    kind = rng.choice(kinds)
    if kind == "wrong_fact":
        a, b = rng.choice(swaps)
        return good.replace(a, b), kind
    pool = {
        "overpromise": OVERPROMISE_EN if en else OVERPROMISE_ZH,
        "rude": RUDE_EN if en else RUDE_ZH,
        "evasive": EVASIVE_EN if en else EVASIVE_ZH,
    }[kind]
    return rng.choice(pool), kind


def preference_rows(rng: random.Random, singles: list[tuple[str, str, bool]], convs: list[Turns]) -> list[dict]:
    rows: list[dict] = []
    for q, good, en in singles:
        bad, _ = _bad_answer(good, rng, en)
        rows.append({"prompt": q, "chosen": good, "rejected": bad})
    for turns in convs:
        msgs = [m for u, a in turns[:-1] for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
        msgs.append({"role": "user", "content": turns[-1][0]})
        bad, _ = _bad_answer(turns[-1][1], rng, False)
        rows.append({"prompt": msgs, "chosen": turns[-1][1], "rejected": bad})
    for q, good, bad in PRESSURE_PROMPTS:
        rows.append({"prompt": q, "chosen": zh_answer(good, rng), "rejected": bad})
    return rows


# ============================================================================ assembly
@dataclass
class Built:
    files: dict[str, list]  # file name -> records (CSV files: rows of dicts)


def _singles(rng: random.Random, intents: list[Intent], en: bool) -> list[tuple[str, str, bool]]:
    wrap = en_answer if en else zh_answer
    out = [(q, wrap(rng.choice(i.answers), rng), en) for i in intents for q in i.questions]
    rng.shuffle(out)
    return out


def _flows(rng: random.Random, builders: list[Callable[[random.Random], Turns]], n: int) -> list[Turns]:
    """Round-robin over flow types; a flow whose opening repeats an earlier one is rebuilt with fresh draws."""
    seen: set[str] = set()
    out: list[Turns] = []
    tries = 0
    while len(out) < n and tries < n * 20:
        turns = builders[tries % len(builders)](rng)
        tries += 1
        if turns[0][0] not in seen:
            seen.add(turns[0][0])
            out.append(turns)
    return out


def _sharegpt(turns: Turns, system: str | None) -> dict:
    conv = [{"from": "system", "value": system}] if system else []
    for u, a in turns:
        conv += [{"from": "human", "value": u}, {"from": "gpt", "value": a}]
    return {"conversations": conv}


def _openai(turns: Turns, system: str | None) -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    for u, a in turns:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def _alpaca(rng: random.Random, q: str, a: str) -> dict:
    if rng.random() < 0.2:  # the "instruction + input" variant of the format
        return {"instruction": "请以青禾生活馆客服小禾的身份回答顾客的问题。", "input": q, "output": a}
    return {"instruction": q, "input": "", "output": a}


def build() -> Built:
    rng = random.Random(SEED)
    zh, en = _singles(rng, ZH_INTENTS, False), _singles(rng, EN_INTENTS, True)
    zh_flows, en_flows = _flows(rng, ZH_FLOWS, 165), _flows(rng, EN_FLOWS, 16)
    cots: dict[str, dict[str, str]] = {}
    while len(cots) < 32:
        c = COT_BUILDERS[len(cots) % len(COT_BUILDERS)](rng)
        cots.setdefault(c["Question"], c)

    alpaca = [_alpaca(rng, q, a) for q, a, _ in zh[:90]]
    alpaca += [
        {"instruction": t[-1][0], "input": "", "output": t[-1][1], "history": [list(x) for x in t[:-1]]}
        for t in zh_flows[:20]
    ]
    sharegpt = [_sharegpt(t, SYSTEM_ZH if i % 2 else None) for i, t in enumerate(zh_flows[20:65])]
    sharegpt += [_sharegpt(t, SYSTEM_EN if i % 2 else None) for i, t in enumerate(en_flows[:8])]
    openai = [_openai(t, SYSTEM_ZH if i % 3 else None) for i, t in enumerate(zh_flows[65:110])]
    openai += [_openai(t, SYSTEM_EN) for t in en_flows[8:]]
    files: dict[str, list] = {
        "sft_alpaca.json": alpaca,
        "sft_sharegpt.jsonl": sharegpt,
        "sft_openai.jsonl": openai,
        "sft_context.jsonl": [{"context": q, "response": a} for q, a, _ in zh[90:120]],
        "sft_cot.json": list(cots.values()),
        "sft_faq_gbk.csv": [{"prompt": q, "response": a} for q, a, _ in zh[120:160]],
        "sft_en.csv": [{"customer_question": q, "agent_answer": a} for q, a, _ in en[:48]],
        "chatlog.csv": chatlog_noise(chatlog_rows(rng, zh_flows[110:135] + PII_MESSAGES)),
        # held-out questions, plus 20 SFT questions again: DPO on prompts the SFT stage has seen is the usual recipe
        "preference.jsonl": preference_rows(rng, zh[160:] + en[48:] + zh[:20], zh_flows[135:165]),
    }
    return Built(files)


# ============================================================================ checks and output
def user_texts(name: str, records: list) -> list[str]:
    """Every customer-side text of one file, whatever its format."""
    out: list[str] = []
    for r in records:
        if name == "sft_alpaca.json":
            out += [r["input"] or r["instruction"]] + [h[0] for h in r.get("history", [])]
        elif "conversations" in r:
            out += [m["value"] for m in r["conversations"] if m["from"] == "human"]
        elif "messages" in r:
            out += [m["content"] for m in r["messages"] if m["role"] == "user"]
        elif name == "preference.jsonl":
            out += [r["prompt"]] if isinstance(r["prompt"], str) else [m["content"] for m in r["prompt"]]
        else:
            out.append(
                r.get("context")
                or r.get("Question")
                or r.get("prompt")
                or r.get("customer_question")
                or (r["text"] if r.get("sender") == "customer" else "")
            )
    return [t for t in out if t]


def answer_texts(records: list) -> list[str]:
    keys = ("output", "response", "Response", "agent_answer", "chosen")
    out = [r[k] for r in records for k in keys if isinstance(r.get(k), str)]
    for r in records:
        out += [m["value"] for m in r.get("conversations", []) if m["from"] == "gpt"]
        out += [m["content"] for m in r.get("messages", []) if m["role"] == "assistant"]
    return out


def check(built: Built) -> None:
    evals = [json.loads(line) for line in (DATA / "eval_cases.jsonl").read_text(encoding="utf-8").splitlines()]
    held_out = {t["content"].strip() for c in evals for t in c["turns"] if t["role"] == "user"}
    for name, records in built.files.items():
        leaked = held_out & {t.strip() for t in user_texts(name, records)}
        if leaked:
            raise SystemExit(f"{name}: repeats eval questions verbatim: {sorted(leaked)[:3]}")
        for a in answer_texts(records):
            if len(a) > MAX_CHARS:
                raise SystemExit(f"{name}: answer longer than {MAX_CHARS} chars: {a[:40]}...")


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write(built: Built) -> None:
    for name, records in built.files.items():
        path = DATA / name
        if name.endswith(".csv"):
            # The FAQ file is deliberately GBK: readers must detect legacy encodings on their own.
            path.write_bytes(_csv_text(records).encode("gbk" if "gbk" in name else "utf-8"))
        elif name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        else:
            path.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def near_duplicates(built: Built, threshold: float = 0.85) -> int:
    """How many SFT records the data pipeline's default near-dedup would likely see as repeats (char 5-grams)."""
    texts = []
    for name, records in built.files.items():
        if name.startswith("sft_"):  # turn texts only, like Conversation.text(): system prompts are not compared
            texts += ["\n".join(user_texts(name, [r]) + answer_texts([r])) for r in records]
    grams = [{t[i : i + 5] for i in range(len(t) - 4)} for t in texts]
    dup = 0
    for i, a in enumerate(grams):
        if any(len(a & b) / len(a | b) >= threshold for b in grams[:i]):
            dup += 1
    return dup


def main(argv: list[str]) -> None:
    built = build()
    check(built)
    for name, records in built.files.items():
        print(f"{name:22s} {len(records):4d} records")
    print(f"near-duplicate SFT records (5-gram Jaccard >= 0.85): {near_duplicates(built)}")
    if "--check" not in argv:
        write(built)
        print(f"written to {DATA}")


if __name__ == "__main__":
    main(sys.argv[1:])
