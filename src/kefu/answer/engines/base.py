"""The one small interface every engine implements: stream a chat completion as text chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kefu.data.schema import ToolCall


@dataclass
class GenParams:
    """Sampling settings of one request (OpenAI names). temperature 0 means greedy."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # Which deployed model answers: an adapter or merged-model folder (local engine) or an upstream model name.
    # None means the engine's base model. The gateway fills it from the routed model version.
    model: str | None = None
    # Functions the model may call (OpenAI tool definitions), rendered by the chat template (kefu.answer.toolcalls).
    tools: list[dict[str, Any]] | None = None
    # Text the answer starts with: appended to the rendered prompt and continued (forces a tool call's start).
    prefix: str = ""
    # The answer must be a call (True) or a call of the function named (OpenAI tool_choice "required" / named).
    # Local engines get `prefix` for it; an upstream server, which writes and parses calls itself, gets tool_choice.
    force_tool: bool | str = False


@dataclass
class Chunk:
    """A piece of generated text; the last one carries finish_reason ('stop' or 'length') and token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Calls an engine parsed itself (an upstream server's OpenAI tool_calls); local engines write calls as text.
    tool_calls: list[ToolCall] = field(default_factory=list)


class Engine(Protocol):
    """Local transformers, fast GPU path, OpenAI-compatible upstream, or scripted (tests) all look like this."""

    name: str

    def stream(self, messages: list[dict[str, Any]], params: GenParams) -> AsyncIterator[Chunk]:
        """Yield chunks of the assistant's answer to `messages` (OpenAI role/content dicts; tool_calls and tool
        messages when the conversation uses tools)."""
        ...


class EngineUnavailable(Exception):
    """The engine cannot answer right now (every upstream down, model not loaded): the gateway answers 503."""
