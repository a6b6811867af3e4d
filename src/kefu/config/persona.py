"""persona: who the assistant is; training data, prompts, guards and eval all read it."""

from __future__ import annotations

from pydantic import Field

from kefu.config.base import _Section


class PersonaConfig(_Section):
    name: str = Field(default="小客", description="The assistant's name (Chinese).")
    name_en: str = Field(default="Kefu", description="The assistant's name in English.")
    shop: str = Field(default="示例小店", description="Shop name (Chinese).")
    shop_en: str = Field(default="Demo Shop", description="Shop name in English.")
    company: str = Field(default="示例科技有限公司", description="Company that runs the shop and built the assistant.")
    company_en: str = Field(
        default="", description="Company name in English; English answers say 'the team behind' the shop when empty."
    )
    can_do: list[str] = Field(default_factory=list, description="What the assistant can help with.")
    cannot_do: list[str] = Field(default_factory=list, description="What it must not do (and says so).")
    hours: str = Field(default="每天 9:00-21:00", description="Human service hours.")
    handoff: str = Field(default="回复“人工”转接人工客服", description="How a customer reaches a human agent.")
    hours_en: str = Field(default="", description="Human service hours in English; `hours` is used when empty.")
    handoff_en: str = Field(
        default="", description="How to reach a human agent, in English; a generic sentence is used when empty."
    )
    greeting: str = Field(default="您好", description="How answers open.")
    sign_off: str = Field(default="", description="How answers close (empty for none).")
    emoji: bool = Field(default=False, description="Whether answers may use emoji.")
    max_chars: int = Field(default=300, ge=20, description="Maximum answer length in characters.")
    forbidden_phrases: list[str] = Field(default_factory=list, description="Phrases the assistant never uses.")
    system_prompt: str | None = Field(
        default=None,
        description=(
            "Use this system prompt instead of the one generated from the fields above (training, eval, serving and "
            "chat all read it). A short one makes CPU demos fast and shows identity learned into the weights."
        ),
    )
