"""Asking for a missing order number: when a customer's message wants something done with their own order
("我的快递怎么还没到", "Where is my parcel?") and gives no number, the persona asks for it (saying what it looks like,
from the action's schema pattern) instead of letting the model guess; the number sent next runs the action
(kefu.answer.actions.Actions.select reads it with the previous message).

An action's triggers alone are too broad for this: "退货运费是我出吗？" and "How long does shipping take?" name
return and shipping too, and are questions for the knowledge base. So a message asks about an order only when it
also reads as a request about the customer's own order (`wants_own_order`) and not as a how-to or policy question.
"""

from __future__ import annotations

import re

from kefu.config import PersonaConfig
from kefu.guard.notices import greeting

# Parameters that hold an order number (the one thing a customer can be asked for without guessing).
ORDER_PARAM = re.compile(r"^order_?(?:id|no|num|number)$", re.I)

# A request about the customer's own order: where it is, why it has not come, check it, cancel or return it.
_WANTS = re.compile(
    r"到哪|在哪|什么时候[能会]?[到送]|怎么还没|还没(?:到|收到|送到|发货|发)|发[货了]*了吗|到账了吗|进度"
    r"|(?:查|看)(?:一下|一查|一看|下|看)?(?:我的)?(?:订单|物流|快递|包裹|退款|退货)"
    r"|我(?:要|想)(?:取消|退货|退掉|改地址|修改地址)|帮我(?:取消|退货|退掉|改地址)"
    r"|\bwhere(?:'s| is| are)\b|\btracking (?:update|status|info)|\b(?:check|look up|find)\b.{0,12}\bmy\b"
    r"|\bwhen\b.{0,20}\bmy\b.{0,20}\b(?:arrive|come|ship)|\bhas(?:n'?t| not) (?:arrived|come|shipped)"
    r"|\bstill (?:hasn'?t|not)\b|\bupdate on my\b|\bstatus of my\b"
    r"|\bI(?: want| would like|'d like| need) to (?:cancel|return)\b|\b(?:cancel|return) my\b",
    re.I,
)
# How-to and policy questions (the knowledge base answers them), even when they name an order or a refund.
_HOW = re.compile(
    r"怎么(?:办|处理|操作|弄|算|退|申请)|如何|多久|几天|多长时间|哪家|运费|包邮|政策|规则|规定|可以吗|能不能|能吗|还能"
    r"|需要我|你需要|\bhow (?:do|does|long|much|many|can)\b|\bcan I\b|\bpolicy\b|\bwho pays\b|\bdo you need\b"
    r"|\bdo I (?:pay|have to)\b|\bminimum\b",
    re.I,
)
_DIGITS = re.compile(r"^\^?([A-Za-z]*)\\d\{(\d+)(?:,(\d+))?\}\$?$")


def wants_own_order(text: str) -> bool:
    """Whether the message asks for something to be looked up or done with the customer's own order."""
    return bool(_WANTS.search(text)) and not _HOW.search(text)


def number_hint(pattern: str | None, lang: str) -> str:
    """What an order number of `pattern` looks like, when the pattern says it plainly ("DD\\d{13}": DD followed
    by 13 digits); '' for any other pattern (never a half-right description)."""
    m = _DIGITS.match(pattern or "")
    if m is None:
        return ""
    prefix, low, high = m.groups()
    count = f"{low}-{high}" if high else low
    if lang == "en":
        return f"{prefix} followed by {count} digits" if prefix else f"{count} digits"
    return f"{prefix} 开头，后面 {count} 位数字" if prefix else f"{count} 位数字"


def ask_for_number(persona: PersonaConfig, lang: str, hint: str, write: bool) -> str:
    """The persona asks for the order number, in the customer's language, saying what it looks like."""
    if lang == "en":
        shape = f" ({hint})" if hint else ""
        then = "take care of it" if write else "look it up"
        return f"{greeting(persona, 'en')}could you send me your order number{shape}? I'll {then} right away."
    shape = f"（{hint}）" if hint else ""
    then = "办理" if write else "查询"
    return f"{greeting(persona, 'zh')}请提供一下您的订单号{shape}，我马上为您{then}。"
