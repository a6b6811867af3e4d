"""Write actions wait for the customer's confirmation in a separate turn.

The answer pipeline has no storage: a turn that asks to confirm returns the `Pending` action in `Prepared.pending`,
and whoever keeps the conversation (the gateway's store, the eval's session, `kefu chat`) hands it back with the next
customer message. That message runs it only when it is a confirmation (`is_confirmation`) from the same customer
(`owner_of`); anything else cancels it. A pending action is never read from the conversation text, so a client
cannot make one up by sending a forged assistant turn.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

_NOT_WORDS = re.compile(r"[\s\W_]+", re.UNICODE)
_CONFIRMED_WHAT = re.compile(r"^(确认|确定)(取消|修改|改|退货|退|办理|提交|申请|要|的)*(订单|地址|吧|了|呀|啊|的)*$")
_NEGATION = re.compile(r"不|别|没|否|算了|\bno\b|\bnot\b|\bdon'?t\b|\bwait\b", re.I)
_YES_EN = {"yes", "yeah", "yep", "ok", "okay", "sure", "confirm", "confirmed"}
PENDING_TTL_S = 30 * 60  # a confirmation given half an hour later is a new conversation, not an answer


def owner_of(customer_id: str | None) -> str:
    """Who may confirm: a digest of the authenticated customer id (the raw id is never kept with the action)."""
    return hashlib.sha256((customer_id or "").encode("utf-8")).hexdigest()[:32]


def is_confirmation(text: str, words: list[str]) -> bool:
    """A whole reply that says yes ('确认', '好的', 'Yes!', '确认取消', 'yes, cancel it'); beyond the exact words, a
    negation anywhere is never a yes."""
    bare = _NOT_WORDS.sub(" ", text).strip().lower()
    if bare in {w.lower() for w in words}:
        return True
    if _NEGATION.search(text):
        return False
    tokens = bare.split()
    if tokens and tokens[0] in _YES_EN and len(tokens) <= 5:
        return True
    return bool(_CONFIRMED_WHAT.fullmatch(bare.replace(" ", "")))


@dataclass
class Pending:
    """A write action waiting for the customer's yes: what to run, for whom, since when."""

    name: str
    arguments: dict[str, Any]
    owner: str  # owner_of(customer id)
    source: str = "rule"
    asked_at: float = field(default_factory=time.time)

    def fresh(self, now: float | None = None) -> bool:
        return ((now or time.time()) - self.asked_at) < PENDING_TTL_S

    def dumps(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> Pending | None:
        """A stored pending action, or None for nothing stored or a row that no longer parses."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None
