"""Live events for the web UI: "the ticket queue changed", "conversation X has new messages".

Events are hints, not data: a stream that hears one reads the store (with its own key's rights) and sends what is
new, so a lost or duplicated event costs nothing but a read. In one process the bus fans out to asyncio queues.
With `serve.redis_url`, publishing goes through a Redis channel instead and every gateway sharing that Redis
(several `kefu serve` processes behind a balancer) delivers it to its own streams. Without Redis, gateways that
share a PostgreSQL store do not hear each other's events; their streams still catch up at every heartbeat
(`HEARTBEAT_S`), which re-reads the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger("kefu.serve")
HEARTBEAT_S = 15.0  # a comment line on idle streams (proxies close silent ones) and a store re-read
QUEUE_SIZE = 256  # per stream; a stream that falls this far behind drops hints and catches up at its next read
TICKETS = "tickets"


def conversation_topic(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


class EventBus:
    def __init__(self, redis: Any = None, prefix: str = "kefu:") -> None:
        self.redis, self.channel = redis, f"{prefix}events"
        self._queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.redis is not None:
            self._listener = asyncio.create_task(self._listen())

    async def publish(self, topic: str, **data: Any) -> None:
        event = {"topic": topic, **data}
        if self.redis is None:
            self._deliver(event)
            return
        try:
            await self.redis.publish(self.channel, json.dumps(event, ensure_ascii=False))
        except Exception:  # Redis down: this process's streams still hear it; the others catch up on heartbeat
            log.exception("publishing a UI event to Redis failed")
            self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    async def _listen(self) -> None:
        """Redis channel -> local streams, reconnecting after errors."""
        while not self.closed:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._deliver(json.loads(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the Redis event listener failed; reconnecting")
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of events (None: the server is shutting down) for as long as the block runs."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        if self.closed:
            q.put_nowait(None)
        self._queues.add(q)
        try:
            yield q
        finally:
            self._queues.discard(q)

    def close(self) -> None:
        """End every stream (thread-safe): a graceful shutdown must not wait for browsers to hang up."""
        if self._loop is None or self._loop.is_closed():
            self.closed = True
            return
        self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        self.closed = True
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._listener is not None:
            self._listener.cancel()


async def next_event(q: asyncio.Queue[dict[str, Any] | None], timeout: float = HEARTBEAT_S) -> dict[str, Any] | None:
    """The next event, {} after `timeout` s of silence (time for a heartbeat), None when the bus closed."""
    try:
        return await asyncio.wait_for(q.get(), timeout)
    except asyncio.TimeoutError:
        return {}


async def next_on(
    q: asyncio.Queue[dict[str, Any] | None], topic: str, timeout: float = HEARTBEAT_S
) -> dict[str, Any] | None:
    """The next event on `topic`, others skipped; {} when none came within `timeout` (a busy bus of other topics
    does not put the heartbeat off), None when the bus closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        ev = await next_event(q, left)
        if not ev or ev["topic"] == topic:
            return ev
    return {}


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
