"""What the two local engines (hf, onnx) share: a request handed from the event loop to a worker thread, and the
relay that streams its chunks back until the answer ends or the caller goes away."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from kefu.answer.engines.base import Chunk, GenParams


@dataclass
class Request:
    """One answer in flight: its prompt ids, where its chunks go, and the worker's progress on it."""

    ids: list[int]
    params: GenParams
    target: str | None
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Chunk | BaseException]
    cancelled: bool = False
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters of decoded text already sent

    def send(self, item: Chunk | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    def advance(self, token: int, eos: set[int], tok: Any) -> bool:
        """Add one sampled token and send the new text; True when the answer is finished (end of turn or
        max_tokens)."""
        finish = None
        if token in eos:
            finish = "stop"
        else:
            self.generated.append(token)
            if len(self.generated) >= self.params.max_tokens:
                finish = "length"
        text = tok.decode(self.generated, skip_special_tokens=True)
        if finish is None and text.endswith("\ufffd"):
            return False  # half of a multi-byte character: wait for the rest
        piece, self.sent = text[self.sent :], len(text)
        if piece or finish:
            self.send(Chunk(piece, finish, prompt_tokens=len(self.ids), completion_tokens=len(self.generated)))
        return finish is not None


async def relay(req: Request, pending: queue.Queue[Request | None]) -> AsyncIterator[Chunk]:
    """Queue `req` for the worker and yield its chunks; a caller that stops reading cancels it (the worker drops
    it at its next token)."""
    pending.put(req)
    try:
        while True:
            item = await req.out.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.finish_reason:
                return
    finally:
        req.cancelled = True
