"""Shop actions: one call to the shop's own backend, for the customer the shop authenticated.

A turn runs an action when the customer's message names it (an action's `triggers`) and holds every required
argument (found by the argument's JSON-schema `pattern`), or when the model called it (`tools()` are the actions
as the model's chat template renders them; kefu.answer.acting runs its call). The backend URL always carries
the customer id the front end authenticated, so an order number alone never opens another customer's order (the
backend answers 404 for it, as for an unknown order). Only the configured `fields` of the response leave this
module, PII-masked; the customer's answer is the action's reply template in their language. Timeouts, refusals and
server errors become a polite answer with the way to a human, never an exception. Write actions (POST) are asked
to be confirmed first (kefu.answer.confirm); a backend's 409 is the shop saying no, told to the customer with its
reason. A lookup whose numeric field passes the action's `handoff_over` limit (a parcel without news for 72 hours)
answers with the handoff text and hands the conversation to a human.
"""

from __future__ import annotations

import functools
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from kefu.answer.asking import ORDER_PARAM, number_hint, wants_own_order
from kefu.config import ActionConfig, ActionsConfig, PersonaConfig
from kefu.guard.notices import greeting

Status = Literal[
    "ok", "not_found", "no_customer", "bad_arguments", "unavailable", "rejected", "awaiting_confirmation", "declined"
]
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")
# Words that name a number rather than ask for anything: they are not triggers ("订单号" holds 订单).
_NUMBER_LABELS = re.compile(r"订单号|订单编号|运单号|单号|order\s*(?:number|no\.?|id|#)", re.I)


@dataclass
class ActionCall:
    name: str
    arguments: dict[str, Any]
    source: Literal["rule", "model"] = "rule"
    confirmed: bool = False  # a write the customer said yes to in this turn
    missing: str | None = None  # a required argument the customer has not given: asked for, nothing runs


@dataclass
class ActionResult:
    call: ActionCall
    status: Status
    http_status: int | None = None
    latency_ms: float = 0.0
    visible: dict[str, Any] = field(default_factory=dict)  # dotted field path -> masked value
    error: str | None = None  # why it failed, for the audit log (never shown to the customer)

    def record(self) -> dict[str, Any]:
        """The audit entry: what ran and how it went; no customer id and no response values."""
        return {
            "name": self.call.name, "arguments": self.call.arguments, "source": self.call.source,
            "status": self.status, "http_status": self.http_status, "latency_ms": self.latency_ms,
            "fields": sorted(self.visible), "error": self.error, "confirmed": self.call.confirmed,
        }  # fmt: skip

    def handoff_passed(self, spec: ActionConfig) -> bool:
        """Whether a numeric field passed its handoff_over limit (a parcel without news for longer than allowed)."""
        values = [self.visible.get(f) for f in spec.handoff_over]
        return self.status == "ok" and any(
            isinstance(v, int | float) and v > limit
            for v, limit in zip(values, spec.handoff_over.values(), strict=True)
        )


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _args_ok(spec: ActionConfig, args: dict[str, Any]) -> bool:
    """Required arguments present; string arguments match their schema pattern (the ids go into a URL)."""
    props: dict[str, Any] = spec.parameters.get("properties", {})
    if any(name not in args for name in spec.parameters.get("required", [])):
        return False
    for name, value in args.items():
        pattern = props.get(name, {}).get("pattern")
        if name not in props or not isinstance(value, str | int):
            return False
        if pattern and not re.fullmatch(pattern, str(value)):
            return False
    return True


class Actions:
    """The configured actions of one shop: choose, run, and say the result."""

    def __init__(self, cfg: ActionsConfig, persona: PersonaConfig, mask: Callable[[str], str]) -> None:
        self.cfg, self.persona, self.mask = cfg, persona, mask
        self.by_name = {a.name: a for a in cfg.tools}

    def tools(self) -> list[dict[str, Any]]:
        """The actions as OpenAI tool definitions, in the shape the tool-use data reader gives training
        (kefu.data.tooluse): the model's chat template renders them (kefu.answer.toolcalls.render) the same way."""
        return [
            {"type": "function", "function": {"name": a.name, "description": a.description,
                                              "parameters": a.parameters}}
            for a in self.cfg.tools
        ]  # fmt: skip

    def select(self, text: str, before: str = "") -> ActionCall | None:
        """The first action the message asks for with all its required arguments in it, or None. `before` is the
        customer's previous message: "我要取消订单" then "DD…" (the number the assistant asked for) runs the action
        the first message named, with the arguments of both."""
        for said, extra in ((text, ""), (before, text)):
            for spec in self._triggered(said):
                args = self._extract(spec, f"{said}\n{extra}" if extra else said)
                if args is not None and (not extra or self._extract(spec, said) is None):
                    return ActionCall(spec.name, args)
        return None

    def missing_number(self, text: str, conversation: str) -> ActionCall | None:
        """The action a message wants done with the customer's own order ("我的快递怎么还没到") when neither the
        message nor the `conversation` so far holds an order number: a call that asks for it (`missing`)."""
        if not wants_own_order(text):
            return None
        for spec in self._triggered(text):
            props: dict[str, Any] = spec.parameters.get("properties", {})
            name = next((p for p in spec.parameters.get("required", []) if ORDER_PARAM.match(p)), None)
            pattern = props.get(name, {}).get("pattern") if name else None
            if name is None or (pattern and re.search(pattern, conversation)):
                return None  # the first action asked for needs no order number, or one was given already
            return ActionCall(spec.name, {}, missing=name)
        return None

    def number_hint(self, call: ActionCall, lang: str) -> str:
        """What the missing argument of `call` looks like, from its schema pattern ('' when it cannot be said)."""
        props: dict[str, Any] = self.by_name[call.name].parameters.get("properties", {})
        return number_hint(props.get(call.missing or "", {}).get("pattern"), lang)

    def _triggered(self, said: str) -> list[ActionConfig]:
        """The actions whose triggers the message holds, in config order."""
        low = _NUMBER_LABELS.sub(" ", said.lower())  # "订单号是 DD…" answers a question; it asks for nothing
        return [spec for spec in self.cfg.tools if said and any(t.lower() in low for t in spec.triggers)]

    def _extract(self, spec: ActionConfig, text: str) -> dict[str, Any] | None:
        props: dict[str, Any] = spec.parameters.get("properties", {})
        args: dict[str, Any] = {}
        for name in spec.parameters.get("required", []):
            finder, pattern = spec.extract.get(name), props.get(name, {}).get("pattern")
            m = re.search(finder or pattern, text) if finder or pattern else None
            if m is None:
                return None
            args[name] = (m.group(1) if finder and m.groups() else m.group(0)).strip()
        return args

    def is_write(self, call: ActionCall) -> bool:
        spec = self.by_name.get(call.name)
        return spec is not None and spec.method != "GET"

    def what(self, call: ActionCall) -> tuple[str, str]:
        """(zh, en) of what a write will do, from its confirm_zh / confirm_en and the arguments."""
        spec, args = self.by_name[call.name], {k: str(v) for k, v in call.arguments.items()}
        fill = functools.partial(_PLACEHOLDER.sub, lambda m: args.get(m.group(1), ""))
        return fill(spec.confirm_zh), fill(spec.confirm_en)

    def run(self, call: ActionCall, customer_id: str | None) -> ActionResult:
        """Call the backend (blocking: run it in a thread); every failure is a status, never an exception."""
        checked = self.precheck(call, customer_id)
        if checked.status != "ok" or not customer_id:
            return checked
        started = time.perf_counter()
        result = self._request(self.by_name[call.name], call, customer_id)
        result.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return result

    def precheck(self, call: ActionCall, customer_id: str | None) -> ActionResult:
        """What can be said without the backend: a known action, arguments inside its schema, a signed-in customer."""
        spec = self.by_name.get(call.name)
        if spec is None or not _args_ok(spec, call.arguments):
            return ActionResult(call, "bad_arguments", error="unknown action or arguments outside the schema")
        if not customer_id:  # no authenticated customer: nothing is looked up
            return ActionResult(call, "no_customer")
        return ActionResult(call, "ok")

    def _request(self, spec: ActionConfig, call: ActionCall, customer_id: str) -> ActionResult:
        values = {**{k: str(v) for k, v in call.arguments.items()}, "customer_id": customer_id}
        path = _PLACEHOLDER.sub(lambda m: urllib.parse.quote(values[m.group(1)], safe=""), spec.url)
        url = path if "://" in path else (self.cfg.base_url or "").rstrip("/") + path
        headers = {spec.auth_header: _env(spec.auth_env)} if spec.auth_env and _env(spec.auth_env) else {}
        used = set(_PLACEHOLDER.findall(spec.url))
        body = {k: v for k, v in call.arguments.items() if k not in used} if spec.method != "GET" else None
        try:
            resp = httpx.request(spec.method, url, headers=headers, json=body, timeout=spec.timeout_s)
        except httpx.HTTPError as e:  # timeout, refused connection, bad URL
            return ActionResult(call, "unavailable", error=f"{type(e).__name__}: {e}"[:200])
        if resp.status_code in (403, 404):
            return ActionResult(call, "not_found", resp.status_code)
        if resp.status_code == 409:  # the shop's own rule says no (already shipped, already returned)
            return ActionResult(call, "rejected", 409, visible=_reasons(resp), error=resp.text[:200])
        if resp.status_code not in (200, 201):
            return ActionResult(call, "unavailable", resp.status_code, error=resp.text[:200])
        try:
            body = resp.json()
        except ValueError:
            return ActionResult(call, "unavailable", 200, error="response is not JSON")
        return ActionResult(call, "ok", resp.status_code, visible=self._visible(spec, body))

    def _visible(self, spec: ActionConfig, body: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in spec.fields:
            value = _dig(body, path)
            out[path] = self.mask(value) if isinstance(value, str) else value
        return out

    def reply(self, result: ActionResult, lang: str) -> str:
        """What the customer reads: the action's template, or a polite failure with the way to a human."""
        p, en = self.persona, lang == "en"
        if result.status == "ok":
            spec = self.by_name[result.call.name]
            values = {**{k: str(v) for k, v in result.call.arguments.items()}, **result.visible}
            template = spec.reply_en if en else spec.reply_zh
            if result.handoff_passed(spec):
                template = spec.handoff_en if en else spec.handoff_zh
            text = _PLACEHOLDER.sub(lambda m: _say(values.get(m.group(1)), en), template)
            hi = greeting(p, lang)
            return hi + (text[:1].lower() + text[1:] if en and hi else text)  # "Hello, your order …"
        if result.status == "rejected":
            why = result.visible.get("reason_en" if en else "reason") or ("not possible" if en else "暂时无法办理")
            ref = " ".join(str(v) for v in result.call.arguments.values())
            if en:
                return f"{greeting(p, lang)}Sorry, this cannot be done for {ref}: {why}. Nothing was changed."
            return f"{greeting(p, lang)}抱歉，{ref} 暂时无法办理：{why}。订单没有任何改动。"
        ref = " ".join(str(v) for v in result.call.arguments.values())
        human = (p.handoff_en or 'reply "human" to reach an agent') if en else p.handoff
        text = (_FAILURES_EN if en else _FAILURES_ZH)[result.status]
        return greeting(p, lang) + text.format(ref=ref, human=human.rstrip("。."))


def _reasons(resp: httpx.Response) -> dict[str, Any]:
    """The shop's reason for a 409, in both languages when it gives them (the reference backend's shape)."""
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        return {}
    if isinstance(detail, str):
        return {"reason": detail, "reason_en": detail}
    return {
        k: detail[k] for k in ("reason", "reason_en") if isinstance(detail, dict) and isinstance(detail.get(k), str)
    }


def _say(value: Any, en: bool) -> str:
    return ("unknown" if en else "暂无") if value is None else str(value)


def _env(name: str) -> str:
    return os.environ.get(name, "")  # a secret (the backend credential), never a behaviour switch


_FAILURES_ZH = {
    "not_found": "没有在您的账户下找到 {ref}，请核对编号后再试；如需帮助，{human}。",
    "no_customer": "查询订单需要先登录账户，请登录后再问一次；如需帮助，{human}。",
    "bad_arguments": "这个编号格式不对，请核对后再发一次；如需帮助，{human}。",
    "unavailable": "抱歉，订单系统暂时查询不到，请稍后再试；着急的话，{human}。",
}
_FAILURES_EN = {
    "not_found": "I could not find {ref} in your account. Please check the number; if you need help, {human}.",
    "no_customer": "Please sign in to your account first so I can look up your orders; if you need help, {human}.",
    "bad_arguments": "That number does not look right. Please check it and send it again; if you need help, {human}.",
    "unavailable": "Sorry, the order system cannot be reached right now. Please try again later, or {human}.",
}
