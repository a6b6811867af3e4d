"""The handoff queue for human agents: list, claim, answer and release tickets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from kefu.serve import handoff
from kefu.serve.auth import AgentKey
from kefu.serve.errors import ApiError
from kefu.serve.events import TICKETS, conversation_topic

router = APIRouter(prefix="/v1/agent")
T = TypeVar("T")


class ReplyRequest(BaseModel):
    text: str = Field(min_length=1, max_length=8000)


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a store operation; unknown tickets are 404, wrong-state operations 409."""
    try:
        return await asyncio.to_thread(fn, *args)
    except LookupError as e:
        raise ApiError(404, str(e), "ticket_not_found") from None
    except ValueError as e:
        raise ApiError(409, str(e), "ticket_state") from None


@router.get("/tickets")
async def tickets(request: Request, key: AgentKey, status: str | None = None) -> dict[str, Any]:
    svc = request.app.state.kefu
    return {"data": await asyncio.to_thread(handoff.list_tickets, svc.store, status)}


@router.post("/tickets/{ticket_id}/claim")
async def claim(request: Request, ticket_id: int, key: AgentKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    ticket = await _call(handoff.claim, svc.store, ticket_id, key.id)
    await svc.events.publish(TICKETS, ticket=ticket_id)
    return ticket


@router.post("/tickets/{ticket_id}/reply")
async def reply(request: Request, ticket_id: int, body: ReplyRequest, key: AgentKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    text = svc.pipeline.answerer.mask(body.text)  # agents paste customer data too: stored masked like the rest
    message_id, conversation_id = await _call(handoff.reply, svc.store, ticket_id, key.id, text)
    await svc.events.publish(conversation_topic(conversation_id))  # the customer's stream sends it now
    return {"message_id": message_id}


@router.post("/tickets/{ticket_id}/release")
async def release(request: Request, ticket_id: int, key: AgentKey) -> dict[str, Any]:
    svc = request.app.state.kefu
    ticket = await _call(handoff.release, svc.store, ticket_id, key.id)
    await svc.events.publish(TICKETS, ticket=ticket_id)
    await svc.events.publish(conversation_topic(ticket["conversation_id"]))  # back to the bot: status event
    return ticket


@router.get("/conversations/{conversation_id}/messages")
async def messages(request: Request, conversation_id: str, key: AgentKey) -> dict[str, Any]:
    rows = await asyncio.to_thread(handoff.messages, request.app.state.kefu.store, conversation_id)
    return {"conversation_id": conversation_id, "messages": rows}
