"""A scripted engine for tests and benchmarks: queued replies with controllable delays, like llm's MockModel."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kefu.answer.engines.base import Chunk, EngineUnavailable, GenParams
from kefu.answer.toolcalls import ToolFormat, ToolsUnsupported


@dataclass
class Reply:
    """One scripted answer: its pieces (each yielded as one chunk) and how long each takes to 'generate'."""

    pieces: Sequence[str]
    first_delay: float = 0.0  # seconds before the first piece: the engine's own time to first token
    piece_delay: float = 0.0  # seconds between later pieces
    finish_reason: str = "stop"
    fail: str | None = None  # raise EngineUnavailable with this message instead of answering
    crash: str | None = None  # raise RuntimeError (an engine bug) with this message

    @classmethod
    def text(cls, text: str, **kw: float | str | None) -> Reply:
        """A reply split into single characters, the way a tokenizer would stream Chinese."""
        return cls(pieces=list(text), **kw)  # type: ignore[arg-type]


@dataclass
class Call:
    """What the engine was asked: tests assert on the prompt the gateway built."""

    messages: list[dict[str, Any]]
    params: GenParams
    cancelled: bool = False
    pieces_sent: int = 0


@dataclass
class ScriptedEngine:
    """Answers from a queue of Replies; when the queue is empty, `default` answers (or the call fails)."""

    replies: collections.deque[Reply] = field(default_factory=collections.deque)
    default: Reply | None = None
    name: str = "scripted"
    calls: list[Call] = field(default_factory=list)
    tool_calls_as: ToolFormat | None = "qwen"  # the tool-call format its scripted model writes; None: no tools

    async def tool_format(self, target: str | None) -> ToolFormat:
        if self.tool_calls_as is None:
            raise ToolsUnsupported("scripted engine: set tool_calls_as to script tool calls")
        return self.tool_calls_as

    def queue(self, *replies: Reply | str) -> None:
        for r in replies:
            self.replies.append(Reply.text(r) if isinstance(r, str) else r)

    @property
    def queue_depth(self) -> int:
        return sum(1 for c in self.calls if not c.cancelled and c.pieces_sent == 0)

    def _next(self) -> Reply:
        if self.replies:
            return self.replies.popleft()
        if self.default is None:
            raise EngineUnavailable("scripted engine: no reply queued")
        return self.default

    async def stream(self, messages: list[dict[str, Any]], params: GenParams) -> AsyncIterator[Chunk]:
        call = Call(messages=[dict(m) for m in messages], params=params)
        self.calls.append(call)
        reply = self._next()
        if reply.fail:
            raise EngineUnavailable(reply.fail)
        if reply.crash:
            raise RuntimeError(reply.crash)
        prompt_tokens = sum(len(m["content"] or "") for m in messages)
        pieces = list(reply.pieces)[: max(params.max_tokens, 0)]
        truncated = len(pieces) < len(reply.pieces)
        try:
            for i, piece in enumerate(pieces):
                delay = reply.first_delay if i == 0 else reply.piece_delay
                if delay:
                    await asyncio.sleep(delay)
                call.pieces_sent = i + 1
                last = i == len(pieces) - 1
                finish = ("length" if truncated else reply.finish_reason) if last else None
                yield Chunk(piece, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=i + 1)
            if not pieces:
                yield Chunk("", finish_reason="length" if truncated else "stop", prompt_tokens=prompt_tokens)
        except (asyncio.CancelledError, GeneratorExit):
            call.cancelled = True
            raise
        finally:
            if call.pieces_sent < len(pieces):
                call.cancelled = True
