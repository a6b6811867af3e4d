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

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Open(BaseModel):
    # OpenAI clients send fields we do not use (logprobs, tools=None, ...): accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Open):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

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
    kefu: KefuRequest | None = None

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
