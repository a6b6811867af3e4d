"""actions: the shop backend's lookups and writes the assistant may run."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from kefu.config.base import _Section


class ActionConfig(_Section):
    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$", description="Tool name the model and the audit log use.")
    description: str = Field(description="What the action looks up, as the model reads it in the tool list.")
    parameters: dict[str, Any] = Field(
        description="JSON schema (type: object) of the arguments; a string property's `pattern` is also how the "
        "pipeline finds it in a customer's message (e.g. order_id: DD followed by 13 digits).",
    )
    method: Literal["GET", "POST"] = Field(
        default="GET",
        description="HTTP method. GET: a lookup, run at once. POST: a write (cancel, change address, open a "
        "return), run only after the customer confirms in a separate turn; its arguments outside the URL go in a "
        "JSON body.",
    )
    url: str = Field(
        description="URL template, relative to actions.base_url unless absolute: {customer_id} (the authenticated "
        "customer, always forwarded) and the parameters' names, e.g. /customers/{customer_id}/orders/{order_id}.",
    )
    auth_header: str = Field(default="Authorization", description="Header that carries the backend credential.")
    auth_env: str | None = Field(
        default=None, description="Environment variable holding that header's whole value (e.g. 'Bearer ...')."
    )
    timeout_s: float = Field(default=3.0, gt=0, le=30, description="Longest wait for the backend's answer.")
    fields: list[str] = Field(
        min_length=1,
        description="Dotted paths of the response fields the model and customer may see (e.g. latest.text); "
        "everything else (names, phones, addresses) never leaves the action, and these are PII-masked too.",
    )
    triggers: list[str] = Field(
        default_factory=list,
        description="Words that make the pipeline run this action when the message also holds every required "
        "parameter (case-insensitive); empty: only a model's <tool_call> runs it.",
    )
    reply_zh: str = Field(description="Chinese answer from {field} placeholders (dotted paths from `fields`).")
    reply_en: str = Field(description="English answer from the same placeholders.")
    extract: dict[str, str] = Field(
        default_factory=dict,
        description="Per parameter, a regex whose first group finds the argument in the customer's message (e.g. "
        "the new address after 改成); default: the parameter's schema `pattern`.",
    )
    confirm_zh: str = Field(
        default="", description="POST only: what will be done, in Chinese (e.g. 取消订单 {order_id}); the persona "
        "asks the customer to confirm it.",
    )  # fmt: skip
    confirm_en: str = Field(default="", description="POST only: the same in English (e.g. cancel order {order_id}).")
    check: str | None = Field(
        default=None,
        description="POST only: a GET action run with the same arguments before asking for confirmation; when it "
        "fails (e.g. not this customer's order) its answer is given and nothing is asked.",
    )
    handoff_over: dict[str, float] = Field(
        default_factory=dict,
        description="A visible numeric field and its limit (e.g. hours_since_update: 72): above it the answer is "
        "handoff_zh/handoff_en and the conversation goes to a human.",
    )
    handoff_zh: str = Field(default="", description="Chinese answer when a handoff_over limit is passed.")
    handoff_en: str = Field(default="", description="English answer when a handoff_over limit is passed.")

    @model_validator(mode="after")
    def _placeholders(self) -> ActionConfig:
        params = set(self.parameters.get("properties", {}))
        known = set(self.fields) | params | {"customer_id"}
        texts = {"url": self.url, "reply_zh": self.reply_zh, "reply_en": self.reply_en,
                 "handoff_zh": self.handoff_zh, "handoff_en": self.handoff_en}  # fmt: skip
        for where, text in texts.items():
            unknown = set(re.findall(r"\{([A-Za-z0-9_.]+)\}", text)) - known
            if unknown:
                raise ValueError(f"{where} uses {sorted(unknown)}: not a field, parameter or customer_id")
        for where, text in (("confirm_zh", self.confirm_zh), ("confirm_en", self.confirm_en)):
            unknown = set(re.findall(r"\{([A-Za-z0-9_.]+)\}", text)) - params
            if unknown:
                raise ValueError(f"{where} uses {sorted(unknown)}: only parameters are known before the action runs")
        return self

    @model_validator(mode="after")
    def _writes(self) -> ActionConfig:
        if self.method == "POST" and not (self.confirm_zh and self.confirm_en):
            raise ValueError("a POST action needs confirm_zh and confirm_en (what the customer is asked to confirm)")
        if set(self.handoff_over) - set(self.fields):
            raise ValueError(f"handoff_over: {sorted(set(self.handoff_over) - set(self.fields))} not in fields")
        if self.handoff_over and not (self.handoff_zh and self.handoff_en):
            raise ValueError("handoff_over needs handoff_zh and handoff_en")
        unknown = set(self.extract) - set(self.parameters.get("properties", {}))
        if unknown:
            raise ValueError(f"extract: {sorted(unknown)} are not parameters")
        return self


class ActionsConfig(_Section):
    base_url: str | None = Field(default=None, description="The shop backend's base URL (kefu shop serve's address).")
    tools: list[ActionConfig] = Field(
        default_factory=list,
        description="Shop actions (see docs/actions.md): lookups, and writes run after the customer confirms; the "
        "first matching one runs.",
    )
    confirm_words: list[str] = Field(
        default_factory=lambda: ["确认", "确定", "是", "是的", "对", "好", "好的", "可以", "嗯", "行", "没问题", "同意",
                                 "yes", "y", "ok", "okay", "confirm", "sure", "yes please", "go ahead"],
        description="Whole replies (punctuation, spaces and case ignored; 确认/确定 may be followed by what is "
        "confirmed, e.g. 确认取消) that confirm a pending write; any other reply cancels it.",
    )  # fmt: skip
    model_calls: bool = Field(
        default=False,
        description="Also offer the actions to the model as tools, rendered by its own chat template as in training, "
        "and run the call it makes; off: only `triggers` run actions.",
    )
