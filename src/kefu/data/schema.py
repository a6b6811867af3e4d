"""Canonical data shapes. Every reader converts into these; everything downstream sees only these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Role = Literal["user", "assistant"]


class Turn(BaseModel):
    """One message of a conversation."""

    role: Role = Field(description="Who speaks: 'user' (the customer) or 'assistant' (the shop's assistant).")
    content: str = Field(description="The message text.")
    reasoning: str | None = Field(
        default=None,
        description="Optional chain-of-thought for an assistant turn; rendered as reasoning only when train.cot is on.",
    )


class Conversation(BaseModel):
    """A training or evaluation dialogue: optional system prompt, then alternating user/assistant turns."""

    system: str | None = Field(default=None, description="System prompt; the persona's prompt is used when absent.")
    turns: list[Turn] = Field(description="Messages in order, starting with a user turn.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata (source, topic, id...).")

    @model_validator(mode="after")
    def _check_order(self) -> Conversation:
        if not self.turns:
            raise ValueError("a conversation needs at least one turn")
        if self.turns[0].role != "user":
            raise ValueError("the first turn must be from the user")
        for prev, cur in zip(self.turns, self.turns[1:], strict=False):
            if prev.role == cur.role:
                raise ValueError(f"two '{cur.role}' turns in a row: roles must alternate user/assistant")
        return self

    @property
    def has_answer(self) -> bool:
        return any(t.role == "assistant" and t.content.strip() for t in self.turns)

    def text(self) -> str:
        """All turn contents joined: what dedup and length filters look at."""
        return "\n".join(t.content for t in self.turns)


class Preference(BaseModel):
    """A preference pair for DPO: a conversation prefix ending with a user turn, and two candidate answers."""

    system: str | None = Field(default=None, description="System prompt; the persona's prompt is used when absent.")
    prompt: list[Turn] = Field(description="The conversation so far, ending with the user turn being answered.")
    chosen: str = Field(description="The better answer: policy-correct and polite.")
    rejected: str = Field(description="The worse answer: over-promising, wrong, rude or evasive.")
    meta: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata.")

    @field_validator("prompt")
    @classmethod
    def _ends_with_user(cls, v: list[Turn]) -> list[Turn]:
        if not v or v[-1].role != "user":
            raise ValueError("the prompt must end with a user turn")
        return v

    def text(self) -> str:
        return "\n".join([t.content for t in self.prompt] + [self.chosen, self.rejected])


class EvalCase(BaseModel):
    """One evaluation question: the conversation so far, a reference answer and what a right answer must hold."""

    id: str = Field(description="Stable identifier, used to diff runs question by question.")
    category: Literal["policy", "identity", "handoff", "multi_turn", "overpromise", "style", "general"] = Field(
        description="What the case tests; metrics pick the cases of their category."
    )
    lang: Literal["zh", "en"] = Field(default="zh", description="Language of the question.")
    turns: list[Turn] = Field(description="Conversation so far, ending with the user turn to answer.")
    reference: str = Field(description="A policy-correct reference answer.")
    key_facts: list[str] = Field(
        default_factory=list,
        description="Facts the answer must contain (numbers, time limits, channels); Chinese numerals are normalised.",
    )
    contradictions: list[str] = Field(
        default_factory=list, description="Phrases that, if present, contradict policy (e.g. '30天无理由')."
    )
    needs_handoff: bool = Field(default=False, description="True when the right answer hands off to a human agent.")
    remember: list[str] = Field(
        default_factory=list,
        description="Multi-turn cases: facts given earlier (order number, product) the answer must use, not ask for.",
    )

    @field_validator("turns")
    @classmethod
    def _ends_with_user(cls, v: list[Turn]) -> list[Turn]:
        if not v or v[-1].role != "user":
            raise ValueError("an eval case must end with a user turn")
        return v
