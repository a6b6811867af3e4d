"""PII masking: each kind found with its validation, non-personal numbers left alone, overlaps, config, the CLI."""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import sys
import time

import pytest

from kefu.config import PIIConfig, load_config
from kefu.data.pii import find_pii, luhn_ok, mask, mask_conversation, mask_stream, valid_id18
from kefu.data.schema import Conversation, ToolCall, Turn

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(region: str = "110105", birth: str = "19900307", seq: str = "123") -> str:
    """A resident ID with the right GB 11643-1999 check character, computed here independently of kefu."""
    first17 = region + birth + seq
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def wrong_check(id18: str) -> str:
    return id18[:17] + ("0" if id18[17] != "0" else "1")


def make_card(prefix: str, length: int) -> str:
    """A card number of `length` digits starting with `prefix` whose last digit makes the Luhn sum a multiple of 10."""
    body = prefix + "1234567890123456789"[: length - len(prefix) - 1]
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.value) for s in find_pii(text)]


ID_A = make_id()
ID_X = next(i for i in (make_id("440305", "19851120", f"{n:03d}") for n in range(200)) if i.endswith("X"))
CARD_UP = make_card("622202", 19)
CARD_VISA = make_card("4", 16)


def test_helpers_agree_with_known_numbers() -> None:
    # Published sample numbers: the GB 11643 example ID and the Visa test card.
    assert make_id("110105", "19491231", "002") == "11010519491231002X"
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert luhn_ok(CARD_UP) and luhn_ok(CARD_VISA) and valid_id18(ID_A) and ID_X.endswith("X")


# ----------------------------------------------------------------------------- phones
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("我的手机是13812345678，谢谢", "13812345678"),
        ("电话 138-1234-5678", "138-1234-5678"),
        ("电话 138 1234 5678 晚上打", "138 1234 5678"),
        ("call +86 139 1234 5678 please", "+86 139 1234 5678"),
        ("0086-15012345678", "0086-15012345678"),
        ("手机：１３８１２３４５６７８", "１３８１２３４５６７８"),
        ("座机010-12345678", "010-12345678"),
        ("门店 0755-1234567 找王经理", "0755-1234567"),
        ("(021)12345678", "(021)12345678"),
        ("（021）12345678", "（021）12345678"),
        ("办公室0571-88886666转123", "0571-88886666转123"),
        ("Call me at (415) 555-0132 tonight", "(415) 555-0132"),
    ],
)
def test_phone_numbers_are_found(text: str, value: str) -> None:
    assert kinds(text) == [("phone", value)]
    assert "[PHONE]" in mask(text)


@pytest.mark.parametrize(
    "text",
    [
        "12812345678",  # 12x is not a mobile prefix
        "138123456789",  # 12 digits: part of something longer
        "A13812345678",  # inside an alphanumeric code
        "客服热线400-820-6688",  # the shop's own hotline
        "toll-free 800-555-0199",
        "买了11件，共138元",
    ],
)
def test_not_phone_numbers(text: str) -> None:
    assert find_pii(text) == []


# ----------------------------------------------------------------------------- ID numbers
def test_valid_18_digit_ids_are_found_in_several_writings() -> None:
    assert kinds(f"身份证号{ID_A}，请核实") == [("id_card", ID_A)]
    assert kinds(f"ID: {ID_X}") == [("id_card", ID_X)]
    assert kinds(f"ID: {ID_X.lower()}") == [("id_card", ID_X.lower())]
    spaced = f"{ID_A[:6]} {ID_A[6:14]} {ID_A[14:]}"
    assert kinds(f"身份证 {spaced}") == [("id_card", spaced)]


@pytest.mark.parametrize(
    "number",
    [
        wrong_check(ID_A),  # checksum fails
        make_id("110105", "19901332", "123"),  # month 13
        make_id("110105", "19900230", "123"),  # 30 February
        make_id("110105", "21990101", "123"),  # born in the future
        make_id("990105", "19900307", "123"),  # no province 99
        make_id("110105", "18500101", "123"),  # before 1900
    ],
)
def test_implausible_ids_are_not_masked(number: str) -> None:
    assert not any(k == "id_card" for k, _ in kinds(f"证件号 {number}"))


def test_15_digit_old_ids_need_a_real_birth_date() -> None:
    assert kinds("老身份证 110105900307123") == [("id_card", "110105900307123")]
    assert find_pii("编号 110105901307123") == []  # month 13
    assert find_pii("编号 990105900307123") == []  # no province 99


# ----------------------------------------------------------------------------- bank cards
def test_luhn_valid_cards_are_found_grouped_or_not() -> None:
    assert kinds(f"卡号{CARD_UP}") == [("bank_card", CARD_UP)]
    grouped = " ".join(CARD_VISA[i : i + 4] for i in range(0, 16, 4))
    assert kinds(f"card {grouped} exp 12/28") == [("bank_card", grouped)]
    dashed = "-".join(CARD_VISA[i : i + 4] for i in range(0, 16, 4))
    assert mask(f"卡 {dashed}") == "卡 [BANK_CARD]"
    assert kinds(f"13位 {make_card('4', 13)}") == [("bank_card", make_card("4", 13))]


@pytest.mark.parametrize(
    "number",
    [
        CARD_UP[:-1] + str((int(CARD_UP[-1]) + 1) % 10),  # Luhn fails
        make_card("1", 16),  # passes Luhn but no card starts with 1
        make_card("20261103", 16),  # passes Luhn, date-led like an order number
        make_card("17", 13),  # passes Luhn, shaped like a millisecond timestamp
        "0000000000000000",  # all one digit
        "62220210011234567890",  # 20 digits: too long
    ],
)
def test_non_cards_are_not_masked(number: str) -> None:
    assert not any(k == "bank_card" for k, _ in kinds(f"号码 {number}"))


# ----------------------------------------------------------------------------- emails, addresses, names
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("邮箱 zhang.san+shop@example.com.cn。", "zhang.san+shop@example.com.cn"),
        ("Email me: bob_smith99@gmail.com!", "bob_smith99@gmail.com"),
        ("发到13812345678@163.com", "13812345678@163.com"),  # the email wins over the phone inside it
    ],
)
def test_emails(text: str, value: str) -> None:
    assert kinds(text) == [("email", value)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (
            "收货地址：浙江省杭州市西湖区文三路90号东部软件园3号楼501室，谢谢",
            "浙江省杭州市西湖区文三路90号东部软件园3号楼501室",
        ),
        ("请寄到北京市朝阳区建国路88号SOHO现代城B座1203", "北京市朝阳区建国路88号SOHO现代城B座1203"),
        ("我住在上海市浦东新区张江路123弄4号，快点", "上海市浦东新区张江路123弄4号"),
        ("快递放阳光小区3栋2单元501室门口", "阳光小区3栋2单元501室"),
        ("寄到杭州市余杭区文一西路969号", "杭州市余杭区文一西路969号"),
        ("地址：江苏省南京市鼓楼区", "江苏省南京市鼓楼区"),
        ("Ship to 123 Main Street, Apt 4, thanks.", "123 Main Street, Apt 4"),
        ("I live at 221B Baker Street.", "221B Baker Street"),
        ("500 W. Oak Ave., Suite 200, Springfield, IL 62704", "500 W. Oak Ave., Suite 200, Springfield, IL 62704"),
    ],
)
def test_addresses(text: str, value: str) -> None:
    assert kinds(text) == [("address", value)]


@pytest.mark.parametrize(
    "text",
    [
        "我不知道3号能不能到",  # 知道 is not a road, 3号 is a date
        "11月3号发货，走中通",
        "I bought 2 Red Apples on Main Street",  # no house number before the street
        "配送到小区门口就行",
        "北京和上海都能发货吗",
    ],
)
def test_not_addresses(text: str) -> None:
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("收件人：张三，电话", "张三"),
        ("收件人张三电话", "张三"),
        ("联系人王小明先生", "王小明"),
        ("姓名是欧阳娜娜", "欧阳娜娜"),
        ("我叫李小龙，邮箱", "李小龙"),
        ("Name: John Smith", "John Smith"),
        ("recipient: Mary-Jane Watson", "Mary-Jane Watson"),
        ("My name is Alice Wong and", "Alice Wong"),
    ],
)
def test_names_after_cues(text: str, value: str) -> None:
    assert ("name", value) in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "联系人信息不全，请补充收件人姓名和电话",
        "如需帮助请联系人工客服",
        "Product name: Wireless Mouse",
        "张三说明天到",  # a name with no cue stays: guessing names from text alone is mostly wrong
    ],
)
def test_not_names(text: str) -> None:
    assert find_pii(text) == []


# ----------------------------------------------------------------------------- not personal data
@pytest.mark.parametrize(
    "text",
    [
        "订单号DD20261103001还没发货",
        "运单号SF1234567890123，圆通YT1234567890123",
        "ZTO 73100012345678 到哪了",
        "快递单号：773100012345678",
        "价格¥199.00，共99元，$12.50，RMB 1380",
        "2026-11-03 20261103 11月3日 14:30 2026/11/3",
        "SKU-AB123 型号X200 货号：20261103555 买了2件",
        "tracking number is 1Z999AA10123456784",
        "满99包邮，实付满300元可享3期免息",
    ],
)
def test_order_tracking_prices_dates_skus_untouched(text: str) -> None:
    assert mask(text) == text


def test_numbers_after_order_cues_stay_even_when_they_pass_a_checksum() -> None:
    # An 18-digit order number that happens to be a valid ID, a Luhn-valid one, and an 11-digit one shaped like a phone.
    for number in (ID_A, CARD_UP, "13812345678"):
        for cue in ("订单号", "订单号：", "订单编号是", "order number ", "Order #", "运单号 ", "tracking no. "):
            assert mask(f"{cue}{number}") == f"{cue}{number}", cue
    # The same numbers without a cue are masked.
    assert mask(f"号码{ID_A}") == "号码[ID_CARD]"
    assert mask(f"付款卡 {CARD_UP}") == "付款卡 [BANK_CARD]"


def test_order_cue_covers_a_list_of_same_shaped_numbers_but_not_a_phone_after_it() -> None:
    text = "订单号 202611030012345678、202611030012345679，手机13812345678"
    assert mask(text) == "订单号 202611030012345678、202611030012345679，手机[PHONE]"
    assert mask(f"订单号DD20261103001和{ID_A}") == "订单号DD20261103001和[ID_CARD]"


def test_mixed_chinese_english_message() -> None:
    text = (
        f"Hi，我的订单DD20261103001 (¥259.00) 还没到。Name: Tom Lee，手机+86 138-1234-5678，"
        f"email tom.lee@example.com，身份证{ID_X}，卡号{CARD_UP}，地址北京市海淀区中关村大街1号。"
    )
    assert mask(text) == (
        "Hi，我的订单DD20261103001 (¥259.00) 还没到。Name: [NAME]，手机[PHONE]，"
        "email [EMAIL]，身份证[ID_CARD]，卡号[BANK_CARD]，地址[ADDRESS]。"
    )


def test_overlaps_resolve_to_one_span() -> None:
    # An 18-digit valid ID that also passes Luhn would be a card candidate too: one span, the more specific kind.
    both = next(
        i for i in (make_id("330106", "19900307", f"{n:03d}") for n in range(1000)) if i.isdigit() and luhn_ok(i)
    )
    assert kinds(f"号码 {both}") == [("id_card", both)]
    # A phone right after an address with no separator stays a phone of its own.
    assert kinds("北京市朝阳区建国路88号13812345678") == [
        ("address", "北京市朝阳区建国路88号"),
        ("phone", "13812345678"),
    ]
    spans = find_pii("收件人张三电话13812345678地址北京市海淀区中关村大街1号")
    assert [s.kind for s in spans] == ["name", "phone", "address"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


# ----------------------------------------------------------------------------- config and conversations
def test_kinds_and_placeholders_come_from_config() -> None:
    text = "手机13812345678，邮箱a@b.com"
    assert mask(text, PIIConfig(kinds=["email"])) == "手机13812345678，邮箱[EMAIL]"
    cfg = load_config(None, ["data.pii.placeholders={phone: '<手机号>'}"]).data.pii
    assert mask(text, cfg) == "手机<手机号>，邮箱[EMAIL]"
    assert [s.kind for s in find_pii(text, kinds=["phone"])] == ["phone"]


def test_mask_conversation_masks_every_text_field_and_keeps_meta() -> None:
    conv = Conversation(
        system="客服电话 13900001111",
        turns=[
            Turn(role="user", content="我的卡号是" + CARD_UP),
            Turn(role="assistant", content="好的，已记录", reasoning="用户卡号 " + CARD_UP),
        ],
        meta={"phone": "13812345678"},
    )
    out = mask_conversation(conv)
    assert out.system == "客服电话 [PHONE]"
    assert [t.content for t in out.turns] == ["我的卡号是[BANK_CARD]", "好的，已记录"]
    assert out.turns[1].reasoning == "用户卡号 [BANK_CARD]"
    assert out.meta == {"phone": "13812345678"} and conv.turns[0].content.endswith(CARD_UP)


def test_mask_conversation_masks_tool_call_arguments_like_the_turns() -> None:
    conv = Conversation(
        turns=[
            Turn(role="user", content="地址改为 13812345678 转 x@y.cn"),
            Turn(
                role="assistant",
                content="",
                tool_calls=[
                    ToolCall(name="change_address", arguments={"address": "x@y.cn", "n": 2, "to": ["13812345678"]})
                ],
            ),
            Turn(role="tool", content="{}"),
        ]
    )
    out = mask_conversation(conv)
    assert out.turns[0].content == "地址改为 [PHONE] 转 [EMAIL]"
    assert out.turns[1].tool_calls[0].arguments == {"address": "[EMAIL]", "n": 2, "to": ["[PHONE]"]}
    assert conv.turns[1].tool_calls[0].arguments["address"] == "x@y.cn"


def test_mask_stream_keeps_line_endings() -> None:
    import io

    out = io.StringIO()
    n = mask_stream(["a 13812345678\r\n", "\n", "b@c.com"], out)
    assert n == 3 and out.getvalue() == "a [PHONE]\r\n\n[EMAIL]"


# ----------------------------------------------------------------------------- CLI
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kefu", "pii", "mask", *args]


def test_cli_masks_stdin_line_by_line(tmp_path: os.PathLike[str]) -> None:
    lines = ["手机13812345678", "订单号DD20261103001", "", f"身份证 {ID_A}", "plain english line", "邮箱 x@y.cn"]
    cfg = tmp_path / "kefu.yaml"  # type: ignore[operator]
    cfg.write_text("data:\n  pii:\n    placeholders: {email: '<邮箱>'}\n", encoding="utf-8")
    run = subprocess.run(
        _cli("-c", str(cfg)), input="\n".join(lines) + "\n", capture_output=True, text=True, encoding="utf-8"
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.split("\n")[:-1]
    assert len(out) == len(lines)
    assert out == ["手机[PHONE]", "订单号DD20261103001", "", "身份证 [ID_CARD]", "plain english line", "邮箱 <邮箱>"]


def test_cli_streams_each_line_before_stdin_closes() -> None:
    proc = subprocess.Popen(_cli(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        answers = []
        for line in ("电话13812345678\n", "no pii here\n"):
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            ready: list[object] = []
            while not ready and time.monotonic() < deadline:
                ready = select.select([proc.stdout], [], [], 1.0)[0]
            assert ready, "no output for a line while stdin is still open: not streaming"
            answers.append(proc.stdout.readline().decode("utf-8"))
        assert answers == ["电话[PHONE]\n", "no pii here\n"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_cli_rejects_an_unknown_placeholder_kind() -> None:
    run = subprocess.run(
        _cli("--set", "data.pii.placeholders={phon: x}"), input="", capture_output=True, text=True, encoding="utf-8"
    )
    assert run.returncode == 2 and "placeholders" in run.stderr


def test_masking_is_idempotent_and_linear_on_hostile_input() -> None:
    text = f"收件人：张三，手机13812345678，身份证{ID_A}，地址北京市朝阳区建国路88号，Name: Tom Lee, a@b.com"
    once = mask(text)
    assert mask(once) == once
    start = time.monotonic()
    for hostile in ("1" * 20_000, "市区路1号" * 4_000, "收件人" * 7_000, "a@" * 10_000, "6222 " * 4_000):
        mask(hostile)
    assert time.monotonic() - start < 10  # each is linear: well under a second here; quadratic would take minutes


def test_each_finders_quick_gate_never_hides_a_candidate() -> None:
    """find_pii skips a finder when the text lacks what its patterns need; over every string in these tests and the
    sample shop's texts, no finder that the gate skips would have found anything."""
    import ast
    from pathlib import Path

    import kefu
    from kefu.data import pii_detect as pii  # the detectors and their gates live there

    here = Path(__file__)
    texts = {n.value for n in ast.walk(ast.parse(here.read_text("utf-8"))) if isinstance(n, ast.Constant)}
    shop = Path(kefu.__file__).parent / "samples" / "shop"
    for f in shop.rglob("*"):
        if f.suffix in (".jsonl", ".json", ".csv", ".md", ".txt", ".html"):
            texts |= set(f.read_text("utf-8", errors="replace").splitlines())
    strings = [t.translate(pii._FULLWIDTH) for t in texts if isinstance(t, str)]
    assert len(strings) > 1000
    for kind, finder in pii._FINDERS.items():
        missed = [t for t in strings if not pii._NEEDS[kind].search(t) and list(finder(t))]
        assert missed == [], kind
