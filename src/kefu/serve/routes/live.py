"""Server-sent event streams that push what the UI used to poll for.

GET /v1/conversations/{id}/events: the customer's side of a conversation; each new stored message (an agent's
reply above all) as `event: message` with `id:` = message id (a reconnect sends `Last-Event-ID` or `?after=`
and gets what it missed), and `event: status` when the conversation moves between the bot and a human.
GET /v1/agent/events: the agent desk; `event: tickets` (the open and claimed tickets) on connect and whenever the
queue changes, `event: conversation` when a conversation has new messages.

Browsers read these with fetch() and an `Authorization` header (EventSource cannot send one, and keys never go
into URLs). Every stream reads the store on connect, on each event and on each heartbeat (kefu.serve.events).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kefu.serve import handoff
from kefu.serve.auth import AgentKey, ChatKey
from kefu.serve.errors import ApiError
from kefu.serve.events import SSE_HEADERS, TICKETS, conversation_topic, next_event, next_on, sse
from kefu.serve.keys import KeyInfo
from kefu.serve.sessions import conversation_status

router = APIRouter()
PING = b": ping\n\n"


async def check_reader(svc: Any, conversation_id: str, key: KeyInfo) -> str:
    """The conversation's status; 404 for a conversation this key did not make (unless admin)."""
    status, owner = await asyncio.to_thread(conversation_status, svc.store, conversation_id)
    if status is None or (owner not in (None, key.id) and not key.can("admin")):
        raise ApiError(404, f"conversation {conversation_id!r} not found", "conversation_not_found")
    return status


@router.get("/v1/conversations/{conversation_id}/events", response_class=StreamingResponse)
async def conversation_events(request: Request, conversation_id: str, key: ChatKey, after: int = 0) -> Any:
    """Push each new message of the conversation (agent replies live) and its status changes."""
    svc = request.app.state.kefu
    await check_reader(svc, conversation_id, key)
    resume = request.headers.get("last-event-id", "")
    after = int(resume) if resume.isdigit() else after
    topic = conversation_topic(conversation_id)

    async def body() -> AsyncIterator[bytes]:
        last, sent_status = after, None
        async with svc.events.subscribe() as q:
            while True:
                rows = await asyncio.to_thread(handoff.messages, svc.store, conversation_id, last)
                now, _ = await asyncio.to_thread(conversation_status, svc.store, conversation_id)
                out = b"".join(sse("message", m, m["id"]) for m in rows)
                last = rows[-1]["id"] if rows else last
                if now != sent_status:
                    out += sse("status", {"status": now})
                    sent_status = now
                yield out or PING
                ev = await next_on(q, topic)
                if ev is None or svc.events.closed:
                    return

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/v1/agent/events", response_class=StreamingResponse)
async def agent_events(request: Request, key: AgentKey) -> Any:
    """Push the ticket queue whenever it changes, and which conversations have new messages."""
    svc = request.app.state.kefu

    async def tickets() -> bytes:
        return sse("tickets", await asyncio.to_thread(handoff.live_tickets, svc.store))

    async def body() -> AsyncIterator[bytes]:
        async with svc.events.subscribe() as q:
            yield await tickets()
            while True:
                ev = await next_event(q)
                if ev is None or svc.events.closed:
                    return
                if not ev or ev["topic"] == TICKETS:  # a heartbeat re-reads too (events from unlinked gateways)
                    yield await tickets()
                elif ev["topic"].startswith("conv:"):
                    yield sse("conversation", {"conversation_id": ev["topic"][5:]})

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
