"""Regenerate the sample shop's tool-use conversations (src/kefu/samples/shop/data/sft_tools.jsonl).

Every conversation is real: the reference shop backend is seeded (kefu.shop.seed, the default seed), served on a
free port, and each tool result is what kefu's own action step got from it (visible fields only, PII-masked); every
assistant text after a tool result, every confirmation question and every refusal is what the answer pipeline says
for that result (kefu.answer.actions, kefu.guard.notices), so training teaches what serving does; the question for
a missing order number is serving's own (kefu.answer.asking). Only the customer phrasings and the assistant's hello
after small talk below are hand-written, and no customer phrasing is an eval phrasing
(kefu.eval.actions.tasks; tests/eval/test_actions_suite.py checks): the customers here are C1011-C1020, the eval's
C1001-C1010.

Records are OpenAI chat messages with assistant `tool_calls` and `role: "tool"` turns, plus a `tools` field with the
JSON schemas of the sample shop's actions. What the model decides is learned: the call, and asking for a missing
order number (the pipeline asks itself where its rule sees the request; the model learns it for the rest). Kept
as context but not learned (OpenAI's `"weight": 0`): the hello after small talk, and what the pipeline writes itself
at serving (actions.model_calls): the answer after a tool result (the action's reply template replaces the model's
text), the confirmation question, the declined notice and the confirmed write (run by the pipeline on the
customer's yes).
So a write starts like a lookup, with the model's call; its result is that it awaits the customer's confirmation.

    python tools/make_tool_convos.py            # rewrite the file
    python tools/make_tool_convos.py --check    # build and report counts only
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kefu.answer.actions import ActionCall, ActionResult, Actions  # noqa: E402
from kefu.answer.asking import ask_for_number  # noqa: E402
from kefu.answer.confirm import is_confirmation  # noqa: E402
from kefu.config import KefuConfig, PersonaConfig, load_config  # noqa: E402
from kefu.data.pii import mask  # noqa: E402
from kefu.eval.actions.tasks import orders  # noqa: E402
from kefu.guard.notices import confirm_question, declined  # noqa: E402
from kefu.shop.seed import seed  # noqa: E402
from kefu.shop.server import running_shop  # noqa: E402

SHOP = ROOT / "src" / "kefu" / "samples" / "shop"
OUT = SHOP / "data" / "sft_tools.jsonl"
SEED = 20261207
TRAIN_CUSTOMERS = tuple(f"C{n}" for n in range(1011, 1021))
TOKEN = "make-tool-convos"
AWAITING = "awaiting_confirmation"  # what the action step records for a write it asked the customer to confirm

# Hand-written customer phrasings ({oid}: order number, {addr}: new address), Chinese then English.
ASK = {
    "tracking": (
        (
            "{oid} 的包裹现在到哪儿了",
            "麻烦看下订单{oid}的物流信息",
            "订单{oid}发出来了吗，快递到哪了",
            "想问问{oid}的快递进度",
            "{oid}，我的快递到哪一站了",
        ),
        (
            "Could you tell me where parcel {oid} is now?",
            "Tracking info for order {oid}, please",
            "Has {oid} shipped yet? Where is it?",
            "I'd like a delivery update for {oid}",
        ),
    ),
    "status": (
        ("订单{oid}什么状态了", "{oid} 这个订单现在啥状态", "麻烦帮我看一下订单 {oid}", "我想知道订单{oid}的状态"),
        ("Check the status of {oid} please", "What's going on with order {oid}?", "Status check: order {oid}"),
    ),
    "return_status": (
        ("订单{oid}退货退款到哪一步了", "{oid} 的退款什么时候到", "我之前退的{oid}，退货状态怎么样"),
        ("Where is my refund for {oid}?", "What is the state of the return on {oid}?"),
    ),
    "cancel": (
        ("订单{oid}帮我取消掉吧", "{oid}不想要了", "麻烦帮我取消订单 {oid}", "{oid} 这个订单帮我取消"),
        ("Please cancel my order {oid}, I don't need it", "I'd like to cancel {oid}", "Cancel order {oid}"),
    ),
    "address": (
        ("订单{oid}的地址改一下，改成{addr}", "{oid}换地址，新地址：{addr}", "我搬家了，{oid}修改地址改为{addr}"),
        ("Please change the address on {oid}, new address: {addr}", "Order {oid}: change address to {addr}"),
    ),
    "return": (
        ("{oid}我想退货", "订单{oid}申请退货", "{oid}这件我要退货，尺码不合适"),
        ("I want to return {oid}, it doesn't fit", "Start a return for order {oid} please"),
    ),
}
# Asking for a missing order number: what the customer says without one (by the lookup it needs), the small talk
# some conversations open with, and how the number is given once asked for.
MISSING = {
    "order_tracking": (
        (
            "我的包裹到哪了", "帮我看看快递什么时候到", "东西怎么还没送到", "查一下我的物流进度",
            "我的货发了吗，到哪了", "我上周买的东西还没收到", "麻烦查下我的快递", "包裹走到哪一步了",
            "我的快递是不是卡住了", "下的单什么时候能到呀",
        ),
        (
            "Where's my package?", "Can you tell me when my delivery arrives?", "My order still hasn't come",
            "Has my parcel shipped yet?", "Could you track my package?", "When will my stuff get here?",
            "Any idea where my delivery is?",
        ),
    ),
    "order_status": (
        (
            "我下的那个单现在什么情况", "想看看我的订单进展", "帮我查一下订单到哪一步了", "我那笔订单处理了没有",
            "订单状态麻烦帮我看下",
        ),
        (
            "What's happening with my order?", "Could you check on my order for me?", "Is my order being processed?",
            "I'd like to know where my order stands", "Any news on my purchase?",
        ),
    ),
}  # fmt: skip
SMALL_TALK = (("你好", "在吗？", "嗨，小禾", "你好呀，问个事"), ("Hi", "Hello, anyone there?", "Hey, quick question"))
GIVE = (
    ("是{oid}", "订单号{oid}", "{oid}，麻烦了", "编号是{oid}", "嗯，{oid}", "我查了下，是{oid}"),
    ("{oid} is the number", "Here: {oid}", "Order {oid}", "It should be {oid}", "{oid}, thanks"),
)
YES = (("确认办理", "确认的", "没问题", "嗯", "行", "同意", "确定"), ("confirm", "sure", "okay", "yep", "yeah, do it"))
NO = (("还是算了", "不了，谢谢", "先不办了"), ("no, keep it", "not now", "no, I changed my mind"))
ADDRS = (
    ("南京市鼓楼区中山路19号2栋", "广州市天河区体育西路66号", "武汉市洪山区珞喻路300号"),
    ("19 Zhongshan Road, Gulou District, Nanjing", "66 Tiyu West Road, Tianhe District, Guangzhou"),
)


class Gen:
    """Builds conversations against the live backend; restores the seeded database before every write."""

    def __init__(self, cfg: KefuConfig, live: Path, pristine: Path, rng: random.Random) -> None:
        self.cfg, self.live, self.pristine, self.rng = cfg, live, pristine, rng
        self.actions = Actions(cfg.actions, cfg.persona, lambda s: mask(s, cfg=cfg.data.pii))
        self.calls = 0
        self.ask_rng = random.Random(SEED + 1)  # the asking conversations' own draws: the others do not shift

    def say(self, kind: str, en: bool, **values: str) -> str:
        return self.rng.choice(ASK[kind][en]).format(**values)

    def call(self, name: str, args: dict[str, Any], cid: str, en: bool, *, model: bool = True) -> list[dict[str, Any]]:
        """The tool call (the model's, learned; or the pipeline's confirmed write, not), the tool's result and the
        answer kefu gives for it (the pipeline's, not learned)."""
        shutil.copyfile(self.pristine, self.live)
        result = self.actions.run(ActionCall(name, args, "model", confirmed=True), cid)
        return [
            *self._call_turns(name, args, _tool_content(result), model),
            _pipeline(self.actions.reply(result, _lang(en))),
        ]

    def ask_confirm(self, name: str, args: dict[str, Any], en: bool) -> list[dict[str, Any]]:
        """The model's call of a write, which serving answers by asking the customer to confirm (nothing runs)."""
        zh, english = self.actions.what(ActionCall(name, args))
        asked = confirm_question(self.cfg.persona, zh, english, _lang(en))
        return [*self._call_turns(name, args, json.dumps({"status": AWAITING}), True), _pipeline(asked)]

    def turn_down(self, name: str, args: dict[str, Any], en: bool) -> dict[str, Any]:
        zh, english = self.actions.what(ActionCall(name, args))
        return _pipeline(declined(self.cfg.persona, zh, english, _lang(en)))

    def _call_turns(self, name: str, args: dict[str, Any], result: str, model: bool) -> list[dict[str, Any]]:
        self.calls += 1
        call_id = f"call_{self.calls}"
        fn = {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}
        call: dict[str, Any] = {"role": "assistant", "content": None,
                                "tool_calls": [{"id": call_id, "type": "function", "function": fn}]}  # fmt: skip
        return [call if model else {**call, "weight": 0}, {"role": "tool", "tool_call_id": call_id, "content": result}]


def _lang(en: bool) -> str:
    return "en" if en else "zh"


def _pipeline(text: str) -> dict[str, Any]:
    """An assistant turn the answer pipeline writes at serving, not the model: context, not learned."""
    return {"role": "assistant", "content": text, "weight": 0}


def _tool_content(result: ActionResult) -> str:
    """What the tool returns to the model: the visible fields, or the failure (no backend text, no customer data)."""
    if result.status == "ok":
        return json.dumps(result.visible, ensure_ascii=False)
    extra = {"reason": result.visible.get("reason_en")} if result.status == "rejected" else {}
    return json.dumps({"error": result.status, **extra}, ensure_ascii=False)


def lookup(g: Gen, o: dict[str, Any], en: bool) -> list[dict[str, Any]]:
    kind = g.rng.choice(["tracking", "status"] if o["latest"] else ["status"])
    if o["return"] is not None and g.rng.random() < 0.5:
        kind = "return_status"
    name = {"tracking": "order_tracking", "status": "order_status", "return_status": "return_status"}[kind]
    user = {"role": "user", "content": g.say(kind, en, oid=o["id"])}
    return [user, *g.call(name, {"order_id": o["id"]}, o["customer_id"], en)]


def missing_number(g: Gen, o: dict[str, Any], name: str, en: bool, chat: bool) -> list[dict[str, Any]]:
    """The customer wants a lookup without the order number (first thing, or after small talk): the model asks
    for it in serving's own words (kefu.answer.asking), then calls the lookup with the number given."""
    rng, lang = g.ask_rng, _lang(en)
    hint = g.actions.number_hint(ActionCall(name, {}, missing="order_id"), lang)
    convo: list[dict[str, Any]] = []
    if chat:  # the model's hello is context here, not what these conversations teach
        convo += [{"role": "user", "content": rng.choice(SMALL_TALK[en])}, _pipeline(_hello(g.cfg.persona, en))]
    return [
        *convo,
        {"role": "user", "content": rng.choice(MISSING[name][en])},
        {"role": "assistant", "content": ask_for_number(g.cfg.persona, lang, hint, write=False)},
        {"role": "user", "content": rng.choice(GIVE[en]).format(oid=o["id"])},
        *g.call(name, {"order_id": o["id"]}, o["customer_id"], en),
    ]


def _hello(persona: PersonaConfig, en: bool) -> str:
    if en:
        return f"Hello, this is {persona.name_en} from {persona.shop_en}. How can I help?"
    return f"您好，我是{persona.shop}的{persona.name}，请问有什么可以帮您？"


def someone_elses(g: Gen, o: dict[str, Any], asker: str, en: bool) -> list[dict[str, Any]]:
    kind = g.rng.choice(["tracking", "status"] if o["latest"] else ["status"])
    name = "order_tracking" if kind == "tracking" else "order_status"
    return [{"role": "user", "content": g.say(kind, en, oid=o["id"])}, *g.call(name, {"order_id": o["id"]}, asker, en)]


def write(g: Gen, o: dict[str, Any], en: bool) -> list[dict[str, Any]]:
    """The model calls the write; serving asks to confirm, and runs it only on the customer's yes in a separate
    turn (or says it was not done): never a write in the turn that asked for it."""
    oid, cid = o["id"], o["customer_id"]
    if o["status"] == "paid" and g.rng.random() < 0.5:
        kind, name, args = "address", "change_address", {"order_id": oid, "address": g.rng.choice(ADDRS[en])}
    elif o["status"] == "delivered" and o["return"] is None:
        kind, name, args = "return", "open_return", {"order_id": oid}
    else:  # paid: it runs; shipped, delivered with a return, cancelled: the shop says no (409)
        kind, name, args = "cancel", "cancel_order", {"order_id": oid}
    said = g.say(kind, en, oid=oid, addr=str(args.get("address", "")))
    convo = [{"role": "user", "content": said}, *g.ask_confirm(name, args, en)]
    if g.rng.random() < 0.25:
        no = g.rng.choice(NO[en])
        return [*convo, {"role": "user", "content": no}, g.turn_down(name, args, en)]
    yes = g.rng.choice(YES[en])
    if not is_confirmation(yes, g.cfg.actions.confirm_words):
        raise SystemExit(f"{yes!r} is not a confirmation under actions.confirm_words")
    return [*convo, {"role": "user", "content": yes}, *g.call(name, args, cid, en, model=False)]


def asking_plan(g: Gen, mine: list[dict[str, Any]]) -> list[Callable[[], list[dict[str, Any]]]]:
    """Two asks per order, three per shipped one: where it is (twice for a shipped order, once for a delivered one),
    else its status (a lookup of another action, so prepare does not drop it as a near-repeat); ~40% English, a
    third after small talk."""
    plan = []
    for rep in range(3):
        for n, o in enumerate(mine):
            if rep == 2 and o["status"] != "shipped":
                continue
            tracked = (o["status"] == "shipped" and rep < 2) or (o["status"] == "delivered" and rep == 0)
            name, en, chat = (
                ("order_tracking" if tracked else "order_status"),
                (n + rep) % 5 in (1, 3),
                (n + 2 * rep) % 3 == 0,
            )
            plan.append(lambda o=o, name=name, en=en, chat=chat: missing_number(g, o, name, en, chat))
    return plan


def build(cfg: KefuConfig, live: Path, pristine: Path) -> tuple[list[dict[str, Any]], Counter[str]]:
    rng = random.Random(SEED)
    g = Gen(cfg, live, pristine, rng)
    mine = orders(pristine, TRAIN_CUSTOMERS)
    tools = [{"type": "function", "function": {"name": a.name, "description": a.description,
                                               "parameters": a.parameters}} for a in cfg.actions.tools]  # fmt: skip
    plan: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
    for rep in range(2):
        for n, o in enumerate(mine):
            en = (n + rep) % 3 == 0
            plan.append(("lookup", lambda o=o, en=en: lookup(g, o, en)))
            plan.append(("write", lambda o=o, en=en: write(g, o, en)))
            other = TRAIN_CUSTOMERS[(TRAIN_CUSTOMERS.index(o["customer_id"]) + 1 + rep) % len(TRAIN_CUSTOMERS)]
            if n % 2 == rep:
                plan.append(("other_customer", lambda o=o, a=other, en=en: someone_elses(g, o, a, not en)))
    plan += [("missing_number", make) for make in asking_plan(g, mine)]
    records, kinds = [], Counter()
    for kind, make in plan:
        messages = make()
        late = any('"hours_since_update"' in str(m.get("content")) and "72" in str(messages[-1]["content"])
                   for m in messages if m["role"] == "tool")  # fmt: skip
        kinds[kind] += 1
        kinds["(of which lookup then policy: 72-hour handoff)"] += late
        records.append({"messages": messages, "tools": tools})
    return records, kinds


def _said(record: dict[str, Any]) -> str:
    """What a conversation says, call ids left out (they are numbered per record)."""
    calls = [[c["function"] for c in m.get("tool_calls") or []] for m in record["messages"]]
    turns = [(m["role"], m.get("content"), c) for m, c in zip(record["messages"], calls, strict=True)]
    return json.dumps(turns, ensure_ascii=False)


def unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two plans can ask about the same order in the same words; prepare would drop the repeat, so it is not kept."""
    seen: set[str] = set()
    kept = []
    for r in records:
        if (said := _said(r)) not in seen:
            seen.add(said)
            kept.append(r)
    return kept


def main(argv: list[str]) -> None:
    cfg = load_config(SHOP / "kefu.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        pristine, live = seed(Path(tmp) / "seed.sqlite"), Path(tmp) / "live.sqlite"
        shutil.copyfile(pristine, live)
        for a in cfg.actions.tools:
            if a.auth_env:
                os.environ[a.auth_env] = f"Bearer {TOKEN}"  # this script's own backend
        with running_shop(live, TOKEN) as url:
            cfg.actions.base_url = url
            records, kinds = build(cfg, live, pristine)
    records = unique(records)
    print(f"{len(records)} conversations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if "--check" not in argv:
        OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        print(f"written to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
