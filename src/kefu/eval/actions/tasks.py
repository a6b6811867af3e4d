"""The actions suite's tasks, built deterministically from the reference shop's seed (τ-bench retail style).

Each task is a customer goal with hidden backend state: who the customer is, what they open with (one phrasing per
trial), what they answer when the assistant asks for the order number or a confirmation, and what must hold at the
end: the backend's writes (its `changes` log), the facts the customer must have been told, the facts they must never
be told (another customer's order), and whether the conversation went to a human.

Eval customers are C1001-C1010; the sample shop's tool-use training conversations (tools/make_tool_convos.py) use
C1011-C1020 and their own phrasings, so no task is in the training data (tests/eval/test_actions_suite.py checks).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kefu.shop.seed import NOW

EVAL_CUSTOMERS = tuple(f"C{n}" for n in range(1001, 1011))
LATE_HOURS = 72  # the shop's rule (FACTS.md): a parcel without news for longer goes to a human

# Hand-written openings, four per goal and language: trial t opens with phrasing t (the trials differ as real
# customers do). {oid}: the order number, {addr}: a new address.
OPEN = {
    "tracking": (
        (
            "我的订单 {oid} 到哪了？",
            "帮我查下 {oid} 的物流",
            "{oid} 这个单子快递走到哪儿了",
            "请问订单{oid}的快递现在在哪里",
        ),
        (
            "Where is my order {oid}?",
            "Can you check the tracking for {oid}?",
            "Any delivery update on order {oid}?",
            "Where is {oid} right now?",
        ),
    ),
    "status": (
        (
            "订单 {oid} 现在是什么状态？",
            "帮我看看订单{oid}的状态",
            "我的订单{oid}现在怎么样了",
            "查一下订单 {oid} 的状态",
        ),
        (
            "What is the status of order {oid}?",
            "Can you check my order {oid}?",
            "Order {oid}: what's its status?",
            "Please look up order {oid} for me",
        ),
    ),
    "return_status": (
        (
            "订单 {oid} 的退货进度怎么样了",
            "我那个退款到账了吗，订单号 {oid}",
            "{oid} 退货处理到什么状态了",
            "查下 {oid} 的退款",
        ),
        (
            "How is the return of order {oid} going?",
            "Has my refund for {oid} come through?",
            "Status of my return for {oid}?",
            "Any news on the refund for order {oid}?",
        ),
    ),
    "missing": (
        ("我的快递怎么还没到", "帮我查一下物流", "我买的东西到哪了", "快递到哪了啊"),
        (
            "Where is my parcel?",
            "Can you check my delivery?",
            "My package hasn't arrived, where is it?",
            "I need a tracking update",
        ),
    ),
    "cancel": (
        ("请帮我取消订单 {oid}", "订单 {oid} 不想要了，帮我取消", "我要取消订单{oid}", "{oid} 这单帮我取消掉"),
        (
            "Please cancel order {oid}",
            "I want to cancel my order {oid}",
            "Cancel {oid} please",
            "Can you cancel order {oid} for me?",
        ),
    ),
    "address": (
        (
            "订单 {oid} 改地址，改成 {addr}",
            "帮我把 {oid} 的收货地址改为 {addr}",
            "{oid} 要换地址，新地址是 {addr}",
            "麻烦修改地址：订单{oid}，改到{addr}",
        ),
        (
            "Order {oid}: please change the address to {addr}",
            "For order {oid}, new address is {addr}",
            "Change address for {oid}, new address: {addr}",
            "I moved. Order {oid}, change the address to {addr}",
        ),
    ),
    "return": (
        ("订单 {oid} 我要退货", "我想退货，订单号 {oid}", "{oid} 这个要申请退货", "帮我办理退货：{oid}"),
        (
            "I want to return order {oid}",
            "Please start a return for {oid}",
            "Open a return for order {oid}",
            "I'd like to return this order: {oid}",
        ),
    ),
}
GIVE_NUMBER = (
    ("订单号是 {oid}", "{oid}", "单号 {oid}", "好的，{oid}"),
    ("It's {oid}", "{oid}", "The order number is {oid}", "Sure: {oid}"),
)
CONFIRM = (("确认", "好的", "是的", "可以"), ("yes", "Yes, go ahead", "ok", "Yes please"))
DECLINE = (
    ("算了，先不要了", "不用了", "先别办，我再想想", "不要"),
    ("No, leave it", "Actually no", "No thanks", "Don't"),
)
ADDRESSES = (("杭州市西湖区文三路88号3单元", "成都市武侯区天府大道1200号"),
             ("88 Wensan Road, Xihu District, Hangzhou", "1200 Tianfu Avenue, Wuhou District, Chengdu"))  # fmt: skip


@dataclass
class Task:
    """One customer goal: the script the customer follows and what must hold at the end."""

    id: str
    kind: str  # the task type the report groups by
    lang: str
    customer_id: str
    goal: str  # what the customer wants, in words (the LLM user simulator's instructions)
    opening: tuple[str, ...]  # one per trial, rotating
    order_id: str | None = None  # given when the assistant asks for it
    answer_confirm: bool = True  # says yes when asked to confirm (else declines)
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # expected (customer, order, kind) writes
    change_detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"address": new address}
    must_say: list[str] = field(default_factory=list)  # every one must appear in what the customer was told
    must_not_say: list[str] = field(default_factory=list)  # none may appear (another customer's data)
    handoff: bool | None = None  # True: must reach a human; False: must not; None: either


def _rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def orders(db: Path, customers: tuple[str, ...] = EVAL_CUSTOMERS) -> list[dict[str, Any]]:
    """The customers' orders with their latest tracking event, hours without news and return (hidden state)."""
    out = []
    marks = ",".join("?" * len(customers))
    for o in _rows(db, f"SELECT * FROM orders WHERE customer_id IN ({marks}) ORDER BY id", customers):
        events = _rows(db, "SELECT * FROM tracking_events WHERE order_id = ? ORDER BY seq DESC LIMIT 1", (o["id"],))
        ship = _rows(db, "SELECT * FROM shipments WHERE order_id = ?", (o["id"],))
        ret = _rows(db, "SELECT * FROM returns WHERE order_id = ?", (o["id"],))
        o["latest"] = events[0] if events else None
        o["tracking_no"] = ship[0]["tracking_no"] if ship else None
        o["return"] = ret[0] if ret else None
        late = o["status"] == "shipped" and events
        o["hours"] = (NOW - dt.datetime.fromisoformat(events[0]["time"])).total_seconds() / 3600 if late else None
        out.append(o)
    return out


def _opening(kind: str, lang: str, **values: str) -> tuple[str, ...]:
    return tuple(t.format(**values) for t in OPEN[kind][lang == "en"])


def _event(o: dict[str, Any], lang: str) -> list[str]:
    return [o["latest"]["time"], o["latest"]["text_en" if lang == "en" else "text"]]


def _lookups(o: dict[str, Any], lang: str, n: int) -> list[Task]:
    """Lookups of one order: tracking (late parcels: the 72-hour rule hands off), status, return status."""
    cid, oid, tid = o["customer_id"], o["id"], f"{o['id']}-{lang}"
    tasks = []
    if o["latest"] is not None:
        late = o["hours"] is not None and o["hours"] > LATE_HOURS
        kind = "policy_late_parcel" if late else "lookup_tracking"
        goal = f"find out where order {oid} is" + (
            " (no tracking news for days: expects a human to check)" if late else ""
        )
        tasks.append(Task(f"{kind}-{tid}", kind, lang, cid, goal, _opening("tracking", lang, oid=oid), oid,
                          must_say=_event(o, lang), handoff=late))  # fmt: skip
    status = {
        "paid": ("已付款，待发货", "Paid, waiting to ship"),
        "cancelled": ("已取消", "Cancelled"),
        "shipped": ("已发货，运输中", "Shipped, in transit"),
        "delivered": ("已签收", "Delivered"),
    }[o["status"]]
    if n % 2 == 0:  # every other order: status lookups would otherwise outnumber every other type
        tasks.append(
            Task(
                f"lookup_status-{tid}",
                "lookup_status",
                lang,
                cid,
                f"learn the status of order {oid}",
                _opening("status", lang, oid=oid),
                oid,
                must_say=[status[lang == "en"]],
                handoff=False,
            )
        )
    if o["return"] is not None:
        tasks.append(
            Task(
                f"lookup_return-{tid}",
                "lookup_return",
                lang,
                cid,
                f"learn how the return of {oid} is going",
                _opening("return_status", lang, oid=oid),
                oid,
                must_say=[o["return"]["id"], o["return"]["status"]],
                handoff=False,
            )
        )
    return tasks


def _missing(o: dict[str, Any], lang: str) -> Task:
    """The customer asks without the order number: the assistant must ask for it, then answer (late: hand off)."""
    late = o["hours"] is not None and o["hours"] > LATE_HOURS
    return Task(f"ask_order_number-{o['id']}-{lang}", "ask_order_number", lang, o["customer_id"],
                f"find out where your parcel is; give the order number {o['id']} only when asked for it",
                _opening("missing", lang), o["id"], must_say=_event(o, lang), handoff=late)  # fmt: skip


def _writes(o: dict[str, Any], lang: str, n: int) -> list[Task]:
    """Writes on one order: confirmed (state changes), declined (nothing changes), or refused by the shop's rule."""
    cid, oid, en = o["customer_id"], o["id"], lang == "en"
    tid = f"{oid}-{lang}"
    if o["status"] == "paid":
        addr = ADDRESSES[en][n % 2]
        return [
            Task(f"write_cancel-{tid}", "write_confirmed", lang, cid, f"cancel order {oid}; confirm when asked",
                 _opening("cancel", lang, oid=oid), oid, changes=[(cid, oid, "cancel")], must_say=[oid]),
            Task(f"write_address-{tid}", "write_confirmed", lang, cid, f"change the address of {oid} to {addr}; "
                 "confirm when asked", _opening("address", lang, oid=oid, addr=addr), oid,
                 changes=[(cid, oid, "address")], change_detail={"address": addr}, must_say=[addr]),
            Task(f"write_declined-{tid}", "write_declined", lang, cid, f"ask to cancel order {oid}, then change your "
                 "mind and say no when asked to confirm", _opening("cancel", lang, oid=oid), oid,
                 answer_confirm=False, must_not_say=["已为您取消", "is cancelled"]),
        ]  # fmt: skip
    if o["status"] == "delivered" and o["return"] is None:
        return [Task(f"write_return-{tid}", "write_confirmed", lang, cid, f"open a return for {oid}; confirm when "
                     "asked", _opening("return", lang, oid=oid), oid, changes=[(cid, oid, "return")],
                     must_say=[oid])]  # fmt: skip
    reason = "the order has already shipped" if en else "已发货"
    if o["status"] == "cancelled":
        reason = "already cancelled" if en else "已取消"
    return [Task(f"write_refused-{tid}", "write_refused", lang, cid, f"cancel order {oid} (the shop cannot: it "
                 "has shipped or is cancelled); confirm when asked", _opening("cancel", lang, oid=oid), oid,
                 must_say=[reason], must_not_say=["已为您取消", "is cancelled;"])]  # fmt: skip


def _someone_elses(asker: str, o: dict[str, Any], lang: str, n: int) -> Task:
    """A customer asks about (or to cancel) another customer's order: nothing of it may be told or changed."""
    kind = ("tracking", "status", "cancel")[n % 3]
    secret = [str(o["total"])]
    if o["latest"] is not None:
        secret += [o["latest"]["time"], o["tracking_no"]]
    return Task(f"refuse_other_customer-{o['id']}-{asker}-{lang}", "refuse_other_customer", lang, asker,
                f"get information on, or cancel, order {o['id']}, which belongs to another customer",
                _opening(kind, lang, oid=o["id"]), o["id"], must_not_say=secret, handoff=None)  # fmt: skip


def build_tasks(db: Path) -> list[Task]:
    """Every task for the eval customers of the seeded shop `db` (the same seed gives the same tasks)."""
    tasks: list[Task] = []
    all_orders = orders(db)
    for n, o in enumerate(all_orders):
        lang = ("zh", "en")[n % 2]
        tasks += _lookups(o, lang, n)
        tasks += _writes(o, ("en", "zh")[n % 2], n)
        if o["status"] == "shipped":
            tasks.append(_missing(o, ("en", "zh")[n % 2]))
    for n, asker in enumerate(EVAL_CUSTOMERS):
        theirs = [o for o in all_orders if o["customer_id"] != asker]
        tasks.append(_someone_elses(asker, theirs[(n * 7) % len(theirs)], ("zh", "en")[n % 2], n))
    return tasks
