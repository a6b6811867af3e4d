"""Canonical data shapes. Every reader converts into these; everything downstream sees only these.

Tool use (function calling) is part of a Conversation: `tools` holds the OpenAI function definitions the assistant
could call, an assistant turn may carry `tool_calls` (its content then is what it said besides the calls, often
empty), and each call's result is a `tool` turn right after it. As JSONL in the `openai` format:

    {"tools": [{"type": "function", "function": {"name": "get_order", "description": "...", "parameters": {...}}}],
     "messages": [
       {"role": "system", "content": "..."},                       (optional)
       {"role": "user", "content": "我的订单 DD20260101 到哪了"},
       {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
           "function": {"name": "get_order", "arguments": "{\"order_id\": \"DD20260101\"}"}}]},
       {"role": "tool", "tool_call_id": "call_1", "content": "{\"status\": \"shipped\", ...}"},
       {"role": "assistant", "content": "您的订单已发货……"}]}

(`arguments` may be a JSON string, as the OpenAI API sends it, or an object.) Training puts the loss on the
assistant's turns (calls and answers), never on tool results. An assistant turn may carry `"weight": 0`, as in
OpenAI's fine-tuning format: it stays in the conversation as context but is not learned (e.g. a reply the serving
pipeline writes itself, not the model).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Role = Literal["user", "assistant", "tool"]


class ToolCall(BaseModel):
    """One function call the assistant makes."""

    id: str | None = Field(default=None, description="The call's id; the tool turn answering it repeats it.")
    name: str = Field(min_length=1, description="The function called (one of the conversation's `tools`).")
    arguments: dict[str, Any] = Field(default_factory=dict, description="The call's arguments, a JSON object.")

    def arguments_json(self) -> str:
        """The arguments as the OpenAI API carries them: a JSON string (non-ASCII kept readable)."""
        return json.dumps(self.arguments, ensure_ascii=False)


class Turn(BaseModel):
    """One message of a conversation."""

    role: Role = Field(
        description="Who speaks: 'user' (the customer), 'assistant' (the shop's assistant) or 'tool' (a function's "
        "result, answering the assistant's call just before it)."
    )
    content: str = Field(description="The message text (an assistant turn that only calls tools: empty).")
    reasoning: str | None = Field(
        default=None,
        description="Optional chain-of-thought for an assistant turn; rendered as reasoning only when train.cot is on.",
    )
    tool_calls: list[ToolCall] = Field(default_factory=list, description="Assistant turns: the functions it calls.")
    tool_call_id: str | None = Field(default=None, description="Tool turns: the id of the call this result answers.")
    name: str | None = Field(default=None, description="Tool turns: the function that produced this result.")
    weight: int = Field(
        default=1,
        description="Assistant turns: 1 to learn the turn, 0 to keep it as context only (no loss on it), as in "
        "OpenAI's fine-tuning format.",
    )

    @field_validator("weight", mode="before")
    @classmethod
    def _check_weight(cls, v: Any) -> Any:
        if isinstance(v, bool) or v not in (0, 1):
            raise ValueError(f"weight must be 0 (not learned) or 1 (learned), got {v!r}")
        return int(v)

    @model_validator(mode="after")
    def _weight_on_assistant(self) -> Turn:
        if self.weight == 0 and self.role != "assistant":
            raise ValueError(f"weight 0 is only meaningful on assistant turns, not on a '{self.role}' turn")
        return self

    def said(self) -> str:
        """Everything the turn says, calls included: what dedup, length and empty-answer checks look at."""
        calls = [json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False) for c in self.tool_calls]
        return "\n".join([self.content, *calls]) if calls else self.content


class Conversation(BaseModel):
    """A training or evaluation dialogue: optional system prompt, then alternating user/assistant turns."""

    system: str | None = Field(default=None, description="System prompt; the persona's prompt is used when absent.")
    turns: list[Turn] = Field(description="Messages in order, starting with a user turn.")
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="Functions the assistant may call, OpenAI style: {type: function, function: {name, description, "
        "parameters}}; rendered into the prompt by the model's chat template.",
    )
    meta: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata (source, topic, id...).")

    @model_validator(mode="after")
    def _check_order(self) -> Conversation:
        if not self.turns:
            raise ValueError("a conversation needs at least one turn")
        if self.turns[0].role != "user":
            raise ValueError("the first turn must be from the user")
        for i, (prev, cur) in enumerate(zip(self.turns, self.turns[1:], strict=False), start=1):
            problem = turn_order_problem(prev, cur)
            if problem:
                raise ValueError(f"turns[{i}]: {problem} (roles must alternate user/assistant)")
        if self.turns[-1].tool_calls:
            raise ValueError("the last turn calls tools but no tool result follows")
        self._check_call_ids()
        return self

    def _check_call_ids(self) -> None:
        """A tool result naming a call id must answer a call of the assistant turn just before its results."""
        ids: set[str | None] = set()
        for i, turn in enumerate(self.turns):
            if turn.tool_calls:
                ids = {c.id for c in turn.tool_calls}
            elif turn.role == "tool" and turn.tool_call_id is not None and turn.tool_call_id not in ids:
                raise ValueError(f"turns[{i}]: tool_call_id {turn.tool_call_id!r} answers no call of the turn before")

    @property
    def has_answer(self) -> bool:
        return any(t.role == "assistant" and t.said().strip() for t in self.turns)

    def text(self) -> str:
        """All turn contents joined (tool calls included): what dedup and length filters look at."""
        return "\n".join(t.said() for t in self.turns)


def turn_order_problem(prev: Turn, cur: Turn) -> str | None:
    """What is wrong with `cur` following `prev`, or None: users and assistants alternate, and an assistant's tool
    calls are followed by their tool results (one or more tool turns) before the assistant speaks again."""
    if prev.tool_calls and cur.role != "tool":
        return f"a '{cur.role}' turn follows tool calls: their results (role 'tool') must come first"
    if cur.role == "tool":
        if not (prev.tool_calls or prev.role == "tool"):
            return "a tool result must follow an assistant turn with tool_calls (or another tool result)"
        return None
    if cur.tool_calls and cur.role != "assistant":
        return "only assistant turns call tools"
    if prev.role == cur.role:
        return f"two '{cur.role}' turns in a row"
    if prev.role == "tool" and cur.role == "user":
        return "a 'user' turn right after a tool result: the assistant answers with it first"
    return None


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
