"""The gateway's face on the answer pipeline: sessions, handoff tickets, cache, store, audit and metrics.

What a customer gets is decided by kefu.answer.pipeline (input guards, PII masking, retrieval, prompt, engine,
output guards, handoff), the same path `kefu eval` and `kefu chat` take. Around it, `prepare` reads the
conversation (silent bot while a human has it), escalates when the answer pipeline hands off, and looks in the
response cache; `run` streams one choice; `finish` stores the exchange PII-masked with the customer's `user_id`
hashed (see `hash_user_id`), writes the audit record with every guard verdict and counts metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from kefu.answer.confirm import Pending
from kefu.answer.engines.base import GenParams
from kefu.answer.pipeline import AnswerPipeline, Outcome, Prepared
from kefu.answer.toolcalls import ToolsUnsupported
from kefu.config import KefuConfig
from kefu.data.schema import ToolCall
from kefu.serve import audit, handoff, sessions
from kefu.serve.audit import AuditWriter
from kefu.serve.cache import Cached, ResponseCache
from kefu.serve.db import Store
from kefu.serve.errors import ApiError
from kefu.serve.events import TICKETS, EventBus, conversation_topic
from kefu.serve.keys import KeyInfo
from kefu.serve.metrics import Metrics
from kefu.serve.tables import State
from kefu.serve.versions import Version

SALT_ENV = "KEFU_USER_ID_SALT"


@dataclass
class Ask:
    """A request, reduced to what the pipeline needs."""

    conversation_id: str
    key: KeyInfo | None
    user_id: str | None
    earlier: list[dict[str, Any]]  # turns the client sent before the new ones (used when nothing is stored)
    new_user: list[str]
    params: GenParams
    version: Version
    n: int = 1
    handoff_requested: bool = False
    cacheable: bool = False
    route: str = "chat.completions"
    fresh: bool = False  # the server generated the conversation id
    # With tools: the new turns as sent (user messages, the assistant's calls, their results), the client's tools
    # (None: the model is shown none) and whether one answer may hold several calls.
    new_turns: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    parallel_tool_calls: bool = True
    force_tool: bool | str = False  # tool_choice "required" (True) or the named function: the answer is a call


@dataclass
class Plan:
    ask: Ask
    started: float
    prep: Prepared
    cached: Cached | None = None
    handoff: dict[str, Any] | None = None  # set: a human has or gets the conversation
    outcomes: list[Outcome] = field(default_factory=list)
    message_id: int | None = None
    had_pending: bool = False  # a write was waiting for this turn's confirmation: it runs or is dropped now


def user_salt(store: Store) -> bytes:
    """The HMAC key for user ids: $KEFU_USER_ID_SALT when set (several stores, one hash), else a random salt made
    once and kept in the store's kefu_state table, so a copy of the conversations alone cannot be reversed by
    hashing guessed ids without also having that row."""
    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode("utf-8")
    salt = store.get_state("user_id_salt")
    if salt is None:
        try:
            with store.session() as s:
                s.add(State(key="user_id_salt", value=secrets.token_hex(32)))
        except IntegrityError:  # another server made it first
            pass
        salt = store.get_state("user_id_salt")
    return (salt or "").encode("utf-8")


def hash_user_id(user_id: str | None, salt: bytes) -> str | None:
    """The stored form of a customer's id: 'u_' + HMAC-SHA256(salt, id), first 32 hex digits. Never the raw id."""
    if not user_id:
        return None
    return "u_" + hmac.new(salt, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class Pipeline:
    def __init__(
        self, cfg: KefuConfig, store: Store, answerer: AnswerPipeline, cache: ResponseCache, audit_writer: AuditWriter,
        metrics: Metrics, events: EventBus | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.store, self.answerer, self.cache = cfg, store, answerer, cache
        self.engine = answerer.engine
        self.audit, self.metrics = audit_writer, metrics
        self.events = events or EventBus()  # new tickets and customer messages reach the agent desk live
        self._salt = user_salt(store)

    # ------------------------------------------------------------------ prepare
    async def prepare(self, ask: Ask) -> Plan:
        started, cid = time.perf_counter(), ask.conversation_id
        status, owner = (None, None)
        if not ask.fresh:  # an id the server just made up cannot exist yet: skip the read
            status, owner = await asyncio.to_thread(sessions.conversation_status, self.store, cid)
        if status is not None and ask.key is not None and owner not in (None, ask.key.id) and not ask.key.can("admin"):
            raise ApiError(404, f"conversation {cid!r} not found", "conversation_not_found", "kefu.conversation_id")
        new = ask.new_turns or [{"role": "user", "content": t} for t in ask.new_user]
        if status == "handoff":
            ticket = await asyncio.to_thread(handoff.open_ticket_for, self.store, cid)
            plan = Plan(ask, started, self.answerer.with_agent(new, started))
            plan.handoff = {"status": "with_agent", "ticket_id": ticket, "reason": None}
            return plan
        stored = await asyncio.to_thread(sessions.history, self.store, cid) if status and not ask.new_turns else []
        history = stored or ask.earlier  # a turn with tool calls runs on the client's copy: the store has no calls
        pending = Pending.loads(await asyncio.to_thread(sessions.load_pending, self.store, cid)) if status else None
        prep = self.answerer.screen([*history, *new], ask.handoff_requested, started, ask.user_id, pending)
        try:
            await self.answerer.use_tools(prep, ask.tools, ask.params.model, ask.force_tool)
        except ToolsUnsupported as e:
            raise ApiError(400, str(e), "tools_unsupported", "tools") from e
        prep.one_call = not ask.parallel_tool_calls
        plan = Plan(ask, started, prep, had_pending=pending is not None)
        for hit in plan.prep.verdict.hits:
            self.metrics.guard_hits.labels(hit).inc()
        if plan.prep.action == "handoff":
            await self._escalate(plan, plan.prep.reason or "user")
        elif plan.prep.action == "answer":
            await self._answer_plan(plan, bool(history))
        return plan

    async def _escalate(self, plan: Plan, reason: str) -> None:
        ask = plan.ask
        key_id = ask.key.id if ask.key else None
        user = hash_user_id(ask.user_id, self._salt)
        await asyncio.to_thread(sessions.ensure, self.store, ask.conversation_id, key_id, user)
        summary = handoff.summarise(plan.prep.turns, reason)  # the turns are already PII-masked
        actor = f"key:{key_id}" if key_id else "system"
        ticket = await asyncio.to_thread(handoff.escalate, self.store, ask.conversation_id, reason, summary, actor)
        self.metrics.escalations.labels(reason.split(":")[0]).inc()
        plan.handoff = {"status": "escalated", "ticket_id": ticket, "reason": reason}
        await self.events.publish(TICKETS, ticket=ticket)

    async def _answer_plan(self, plan: Plan, has_history: bool) -> None:
        ask, prep = plan.ask, plan.prep
        prep.context.kb_version = await asyncio.to_thread(self.answerer.kb.version)
        if ask.cacheable and not has_history and self.cache.enabled and prep.call is None:  # actions: never cached
            question = prep.turns[-1]["content"]  # masked: no customer data in cache keys
            plan.cached = await self.cache.get(question, ask.version.name, prep.context.kb_version)
            self.metrics.cache.labels("hit" if plan.cached else "miss").inc()
            if plan.cached is not None:
                prep.context.citations = plan.cached.citations
                return
        await asyncio.to_thread(self.answerer.ground, prep)

    # ------------------------------------------------------------------ run
    async def run(self, plan: Plan, index: int) -> AsyncIterator[str | ToolCall]:
        """The text of choice `index`, as the customer may see it, and the calls of the client's tools."""
        out = plan.outcomes[index]
        if plan.cached is not None:
            out.text, out.ttft = plan.cached.text, time.perf_counter() - plan.started
            yield out.text
            return
        params = plan.ask.params
        if index and params.seed is not None:
            params = dataclasses.replace(params, seed=params.seed + index)  # n choices must differ when seeded
        async for piece in self.answerer.stream_parts(plan.prep, params, out):
            yield piece

    # ------------------------------------------------------------------ finish
    async def finish(self, plan: Plan) -> None:
        """Store (masked), escalate when the model handed off, cache, audit, count."""
        ask, prep, first = plan.ask, plan.prep, plan.outcomes[0]
        if prep.escalate:  # a shop action's rule (a parcel without news for too long): a human checks it
            await self._escalate(plan, prep.escalate)
        elif plan.cached is None and self.answerer.model_handoff(prep, first):
            await self._escalate(plan, "model")
        silent = plan.handoff is not None and plan.handoff["status"] == "with_agent"
        answer = None if silent else first.text  # notices and guarded answers: already free of PII
        key_id = ask.key.id if ask.key else None
        new = prep.turns[-len(ask.new_turns or ask.new_user) :]
        users = [t["content"] for t in new if t["role"] == "user"]
        actor = f"key:{key_id}" if key_id else "anonymous"

        def events(message_id: int | None) -> list[audit.Event]:
            plan.message_id = message_id
            return [audit.Event(actor, "answer", self._audit_payload(plan))]

        fresh = ask.fresh and plan.handoff is None  # an escalation has already created the conversation's row
        user = hash_user_id(ask.user_id, self._salt)
        exchange = sessions.Exchange(ask.conversation_id, users, answer, ask.version.name, key_id, user, fresh)
        await self.audit.run(audit.AnswerJob(exchange, events))  # committed before the client hears it is complete
        if plan.handoff is not None:  # a human has it: the desk shows the customer's new words now
            await self.events.publish(conversation_topic(ask.conversation_id))
        if prep.pending is not None or plan.had_pending:  # asked now, or confirmed / dropped by this message
            await asyncio.to_thread(sessions.save_pending, self.store, ask.conversation_id,
                                    prep.pending.dumps() if prep.pending else None)  # fmt: skip
        if self._cache_worthy(plan):
            cached = Cached(text=first.text, citations=prep.context.citations)
            await self.cache.put(prep.turns[-1]["content"], ask.version.name, prep.context.kb_version, cached)
        self._observe(plan)

    def _cache_worthy(self, plan: Plan) -> bool:
        """Only clean, complete, first-turn answers are worth serving again."""
        ask, first = plan.ask, plan.outcomes[0]
        fresh = ask.cacheable and plan.cached is None and plan.handoff is None and self.cache.enabled
        fresh = fresh and plan.prep.action == "answer" and not plan.prep.actions  # a model's tool call: personal
        single = len(ask.new_user) == 1 and not ask.earlier
        return fresh and single and first.finish_reason == "stop" and not first.guard_hits

    def _audit_payload(self, plan: Plan) -> dict[str, Any]:
        first, prep = plan.outcomes[0], plan.prep
        return {
            "conversation_id": plan.ask.conversation_id,
            "message_id": plan.message_id,
            "route": plan.ask.route,
            "model_version": plan.ask.version.name,
            "kb_version": prep.context.kb_version,
            "lang": prep.lang,
            "action": prep.action,
            "guard": {
                "input": prep.verdict.reasons,
                "output": sorted(set(first.guard_hits)),
                "details": first.guard_details,
                "original": first.original,
            },
            "kb_dropped": prep.context.dropped,
            "handoff": plan.handoff,
            "cached": plan.cached is not None,
            "finish_reason": first.finish_reason,
            "latency_ms": round((time.perf_counter() - plan.started) * 1000, 1),
            "ttft_ms": None if first.ttft is None else round(first.ttft * 1000, 1),
            "tokens": {"prompt": first.prompt_tokens, "completion": first.completion_tokens},
            "actions": prep.actions,
            "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in first.tool_calls],
        }

    def _observe(self, plan: Plan) -> None:
        version = plan.ask.version.name
        self.metrics.requests.labels(plan.ask.route, "200", version).inc()
        for action in plan.prep.actions:
            self.metrics.actions.labels(action["name"], action["status"]).inc()
        for out in plan.outcomes:
            for hit in set(out.guard_hits):
                self.metrics.guard_hits.labels(hit).inc()
            if out.ttft is not None:
                self.metrics.ttft.labels(version).observe(out.ttft)
            if out.completion_tokens > 1 and out.ttft is not None:
                gen_time = time.perf_counter() - plan.started - out.ttft
                self.metrics.tpot.labels(version).observe(gen_time / (out.completion_tokens - 1))

    def cancelled(self, plan: Plan) -> None:
        """The client went away mid-answer: nothing is stored, but the audit log says so."""
        payload = {**self._audit_payload(plan), "cancelled": True}
        key_id = plan.ask.key.id if plan.ask.key else None
        self.audit.submit(f"key:{key_id}" if key_id else "anonymous", "answer.cancelled", payload)
