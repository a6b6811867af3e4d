"""OpenAI Chat Completions request/response shapes (as vLLM and SGLang implement them) plus kefu's optional field.

kefu extensions live only under the optional key "kefu", so plain OpenAI clients keep working:
request  "kefu": {"conversation_id", "user_id", "handoff"}
response "kefu": {"conversation_id", "citations", "handoff", "model_version", "kb_version", "cached"}
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Open(BaseModel):
    # OpenAI clients send fields we do not use (logprobs, tools=None, ...): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class FunctionCall(_Open):
    name: str = Field(min_length=1)
    arguments: str = Field(default="{}", description="The call's arguments as a JSON string (OpenAI's shape).")


class ToolCallOut(_Open):
    """An assistant message's tool call, as clients send it back in the history."""

    id: str = Field(default="", max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCallOut] | None = Field(default=None, description="Assistant messages: the calls it made.")
    tool_call_id: str | None = Field(default=None, max_length=128, description="Tool messages: the call answered.")
    name: str | None = Field(default=None, max_length=128)

    def text(self) -> str:
        """Content as plain text; multi-part content keeps its text parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class StreamOptions(_Open):
    include_usage: bool = False


class KefuRequest(_Open):
    conversation_id: str | None = Field(default=None, max_length=128, description="Server-side session to continue.")
    user_id: str | None = Field(
        default=None, max_length=128,
        description="The shop's customer id (stored masked); shop actions look up only this customer's orders.",
    )  # fmt: skip
    handoff: bool = Field(default=False, description="The customer asks for a human agent explicitly.")


class FunctionDef(_Open):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Open):
    type: Literal["function"] = "function"
    function: FunctionDef

    def spec(self) -> dict[str, Any]:
        """The definition as chat templates render it (OpenAI's shape, unset fields left out)."""
        fn = self.function
        params = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        return {"type": "function", "function": {"name": fn.name, "description": fn.description or "",
                                                 "parameters": params}}  # fmt: skip


class NamedToolChoice(_Open):
    type: Literal["function"] = "function"
    function: dict[str, str]  # {"name": ...}

    @property
    def name(self) -> str:
        return self.function.get("name", "")


class ChatCompletionRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=8)
    user: str | None = None
    tools: list[ToolDef] | None = Field(default=None, max_length=64)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    kefu: KefuRequest | None = None

    def offered_tools(self) -> list[dict[str, Any]] | None:
        """The tools the model is shown: none for tool_choice "none", only the named one for a named choice."""
        choice = self.tool_choice
        if not self.tools or choice == "none":
            return None
        specs = [t.spec() for t in self.tools]
        if isinstance(choice, NamedToolChoice):
            specs = [s for s in specs if s["function"]["name"] == choice.name]
        return specs

    def forced_tool(self) -> bool | str:
        """tool_choice "required": True; a named function: its name; otherwise False (the model decides)."""
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            return choice.name
        return choice == "required"

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        choice = self.tool_choice
        if choice not in (None, "none") and not self.tools:
            raise ValueError("tool_choice is only allowed when tools are specified")
        if isinstance(choice, NamedToolChoice) and choice.name not in {t.function.name for t in self.tools or []}:
            raise ValueError(f"tool_choice names function {choice.name!r}, which is not in tools")
        return self

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else (v or [])
        if len(items) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in items):
            raise ValueError("stop sequences must not be empty")
        return v

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class KefuResponse(BaseModel):
    conversation_id: str
    citations: list[dict[str, Any]] = Field(default_factory=list)
    handoff: dict[str, Any] | None = None
    model_version: str | None = None
    kb_version: str | None = None
    cached: bool = False


class Choice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    kefu: KefuResponse | None = None


# Ids only need to be unique, not secret (access is checked against the API key): a generator seeded once from
# the OS is ~100x cheaper than os.urandom per request, which showed up in load profiles.
_IDS = random.Random(uuid.uuid4().int)


def new_id(prefix: str) -> str:
    return f"{prefix}-{_IDS.getrandbits(128):032x}"


def completion_id() -> str:
    return new_id("chatcmpl")


def chunk_dict(
    cid: str, model: str, created: int, index: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """One chat.completion.chunk; every chunk of a stream carries the same id."""
    choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice]}


def now() -> int:
    return int(time.time())


class SimpleChatRequest(_Open):
    """POST /chat: the minimal shop-widget API."""

    question: str = Field(min_length=1, max_length=4000)
    conversation_id: str | None = Field(default=None, max_length=128)


class SimpleChatResponse(BaseModel):
    answer: str
    citations: list[dict[str, Any]]
    handoff: bool
    conversation_id: str


class FeedbackRequest(_Open):
    conversation_id: str = Field(max_length=128)
    message_id: int | None = None
    rating: Literal["up", "down"] | None = None
    text: str | None = Field(default=None, max_length=4000)
    correction: str | None = Field(default=None, max_length=8000, description="An agent's corrected answer.")
