"""Human handoff: escalated conversations get a ticket; agents list, claim, answer and release them.

While a conversation is handed off, the bot does not answer it: customer messages are stored for the agent and
get the persona's "with_agent" notice (not stored) plus `kefu.handoff` telling the client a human will reply.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kefu.errors import KefuError
from kefu.serve import audit
from kefu.serve.db import Store
from kefu.serve.tables import Conversation, Message, Ticket, utcnow


def summarise(turns: list[dict[str, str]], reason: str, limit: int = 300) -> str:
    """A short, rule-based summary for the agent: why, and the customer's latest words."""
    said = [t["content"].strip().replace("\n", " ") for t in turns if t["role"] == "user" and t["content"].strip()]
    first, last = (said[0], said[-1]) if said else ("", "")
    text = f"[{reason}] {first}" if first == last else f"[{reason}] first: {first} | latest: {last}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escalate(store: Store, conversation_id: str, reason: str, summary: str, actor: str) -> int:
    """Hand the conversation to humans; an already-open ticket is reused. Returns the ticket id."""
    with store.session() as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None:
            raise KefuError(f"conversation {conversation_id!r} does not exist")
        open_ticket = s.scalar(
            select(Ticket).where(Ticket.conversation_id == conversation_id, Ticket.status != "closed")
        )
        conv.status = "handoff"
        if open_ticket is not None:
            return open_ticket.id
        ticket = Ticket(conversation_id=conversation_id, reason=reason, summary=summary, status="open")
        s.add(ticket)
        s.flush()
        payload = {"ticket": ticket.id, "conversation_id": conversation_id, "reason": reason}
        audit.append(s, [audit.Event(actor, "handoff.escalate", payload)])
        return ticket.id


def open_ticket_for(store: Store, conversation_id: str) -> int | None:
    with store.session() as s:
        return s.scalar(select(Ticket.id).where(Ticket.conversation_id == conversation_id, Ticket.status != "closed"))


def _ticket(t: Ticket) -> dict[str, Any]:
    return {
        "id": t.id,
        "conversation_id": t.conversation_id,
        "status": t.status,
        "reason": t.reason,
        "summary": t.summary,
        "claimed_by": t.claimed_by,
        "created_at": t.created_at.isoformat(),
    }


def list_tickets(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    with store.session() as s:
        q = select(Ticket).order_by(Ticket.id)
        if status:
            q = q.where(Ticket.status == status)
        return [_ticket(t) for t in s.scalars(q)]


def live_tickets(store: Store) -> list[dict[str, Any]]:
    """The queue an agent works on: open and claimed tickets, oldest first."""
    with store.session() as s:
        return [_ticket(t) for t in s.scalars(select(Ticket).where(Ticket.status != "closed").order_by(Ticket.id))]


def _get(s: Any, ticket_id: int) -> Ticket:
    t = s.get(Ticket, ticket_id)
    if t is None:
        raise LookupError(f"ticket {ticket_id} does not exist")
    return t


def claim(store: Store, ticket_id: int, agent: str) -> dict[str, Any]:
    with store.session() as s:
        t = _get(s, ticket_id)
        if t.status == "closed":
            raise ValueError(f"ticket {ticket_id} is closed")
        if t.status == "claimed" and t.claimed_by != agent:
            raise ValueError(f"ticket {ticket_id} is already claimed by {t.claimed_by}")
        t.status, t.claimed_by, t.updated_at = "claimed", agent, utcnow()
        audit.append(s, [audit.Event(f"key:{agent}", "handoff.claim", {"ticket": ticket_id})])
        return _ticket(t)


def reply(store: Store, ticket_id: int, agent: str, text: str) -> tuple[int, str]:
    """The agent's answer goes into the conversation as an assistant message authored by the agent.
    Returns (message id, conversation id)."""
    with store.session() as s:
        t = _get(s, ticket_id)
        if t.status != "claimed" or t.claimed_by != agent:
            raise ValueError(f"ticket {ticket_id}: claim it before replying")
        msg = Message(conversation_id=t.conversation_id, role="assistant", author=f"agent:{agent}", content=text)
        s.add(msg)
        s.flush()
        audit.append(s, [audit.Event(f"key:{agent}", "handoff.reply", {"ticket": ticket_id, "message": msg.id})])
        return msg.id, t.conversation_id


def release(store: Store, ticket_id: int, agent: str) -> dict[str, Any]:
    """Close the ticket and give the conversation back to the bot."""
    with store.session() as s:
        t = _get(s, ticket_id)
        t.status, t.updated_at = "closed", utcnow()
        conv = s.get(Conversation, t.conversation_id)
        if conv is not None:
            conv.status = "bot"
        audit.append(s, [audit.Event(f"key:{agent}", "handoff.release", {"ticket": ticket_id})])
        return _ticket(t)


def messages(store: Store, conversation_id: str, after_id: int = 0) -> list[dict[str, Any]]:
    with store.session() as s:
        rows = s.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id > after_id)
            .order_by(Message.id)
        )
        return [{"id": m.id, "role": m.role, "author": m.author, "content": m.content} for m in rows]
