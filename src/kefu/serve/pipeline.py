"""One customer turn, start to end: input guard -> retrieve -> prompt -> engine -> output guard -> store.

`prepare` decides what happens (bot silent because a human has the conversation, escalate, cached answer, or a
prompt for the engine), `run` streams one choice's text through stop sequences and the output guard, `finish`
stores the exchange PII-masked, writes the audit record and counts metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from kefu.answer.engines.base import Engine, GenParams
from kefu.answer.textstream import ClauseBuffer, StopFilter
from kefu.config import KefuConfig
from kefu.serve import audit, handoff, seams, sessions
from kefu.serve.audit import AuditWriter
from kefu.serve.cache import Cached, ResponseCache
from kefu.serve.db import Store
from kefu.serve.errors import ApiError
from kefu.serve.keys import KeyInfo
from kefu.serve.metrics import Metrics
from kefu.serve.versions import Version

# A rule hook looks at the conversation (OpenAI-style messages, newest last) and returns a reason to hand it
# to a human (e.g. "refund_over_limit"), or None.
HandoffRule = Callable[[list[dict[str, str]]], str | None]


@dataclass
class Ask:
    """A request, reduced to what the pipeline needs."""

    conversation_id: str
    key: KeyInfo | None
    user_id: str | None
    earlier: list[dict[str, str]]  # turns the client sent before the new ones (used when nothing is stored)
    new_user: list[str]
    params: GenParams
    version: Version
    n: int = 1
    handoff_requested: bool = False
    cacheable: bool = False
    route: str = "chat.completions"
    fresh: bool = False  # the server generated the conversation id


@dataclass
class Outcome:
    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    guard_hits: list[str] = field(default_factory=list)
    ttft: float | None = None


@dataclass
class Plan:
    ask: Ask
    started: float
    messages: list[dict[str, str]] = field(default_factory=list)
    context: seams.Context = field(default_factory=seams.Context)
    verdict: seams.InputVerdict = field(default_factory=seams.InputVerdict)
    cached: Cached | None = None
    handoff: dict[str, Any] | None = None  # set: the bot does not generate
    notice: str = ""
    outcomes: list[Outcome] = field(default_factory=list)
    message_id: int | None = None


class Pipeline:
    def __init__(
        self,
        cfg: KefuConfig,
        store: Store,
        engine: Engine,
        cache: ResponseCache,
        audit_writer: AuditWriter,
        metrics: Metrics,
        retriever: Any = None,
        rules: list[HandoffRule] | None = None,
    ) -> None:
        self.cfg, self.store, self.engine, self.cache = cfg, store, engine, cache
        self.audit, self.metrics, self.retriever = audit_writer, metrics, retriever
        self.rules = rules or []
        self.have = seams.available()
        self._system = seams.system_prompt(cfg) if self.have["persona"] else ""
        # The system prompt and knowledge-base passages recur in almost every prompt: count each text once.
        counter: sessions.Counter = getattr(engine, "count_tokens", None) or sessions.approx_tokens
        self._count: sessions.Counter = functools.lru_cache(maxsize=1024)(counter)

    # ------------------------------------------------------------------ prepare
    async def prepare(self, ask: Ask) -> Plan:
        plan = Plan(ask=ask, started=time.perf_counter())
        cid = ask.conversation_id
        status, owner = (None, None)
        if not ask.fresh:  # an id the server just made up cannot exist yet: skip the read
            status, owner = await asyncio.to_thread(sessions.conversation_status, self.store, cid)
        if status is not None and ask.key is not None and owner not in (None, ask.key.id) and not ask.key.can("admin"):
            raise ApiError(404, f"conversation {cid!r} not found", "conversation_not_found", "kefu.conversation_id")
        if status == "handoff":
            ticket = await asyncio.to_thread(handoff.open_ticket_for, self.store, cid)
            plan.handoff = {"status": "with_agent", "ticket_id": ticket, "reason": None}
            return plan
        question = ask.new_user[-1]
        stored = await asyncio.to_thread(sessions.history, self.store, cid) if status else []
        history = stored or ask.earlier
        turns = [*history, *({"role": "user", "content": t} for t in ask.new_user)]
        said_before = [t["content"] for t in turns[:-1] if t["role"] == "user"]
        plan.verdict = seams.check_input(question, said_before, self.cfg, self.have)
        for hit in plan.verdict.hits:
            self.metrics.guard_hits.labels(hit.split(":")[0]).inc()
        reason = self._handoff_reason(ask, plan.verdict, turns)
        if reason is not None:
            await self._escalate(plan, reason, turns)
        elif plan.verdict.injection:
            p = self.cfg.persona  # the model never sees an injection attempt; the customer gets a fixed refusal
            plan.notice = f"{p.greeting}，抱歉，我只能回答与{p.shop}商品和服务相关的问题。{p.handoff}。"
            plan.handoff = None
        else:
            await self._answer_plan(plan, question, history, turns)
        return plan

    def _handoff_reason(self, ask: Ask, verdict: seams.InputVerdict, turns: list[dict[str, str]]) -> str | None:
        if ask.handoff_requested or verdict.handoff:
            return "user"
        for rule in self.rules:
            name = rule(turns)
            if name:
                return f"rule:{name}"[:32]
        return None

    async def _escalate(self, plan: Plan, reason: str, turns: list[dict[str, str]]) -> None:
        ask = plan.ask
        key_id = ask.key.id if ask.key else None
        await asyncio.to_thread(sessions.ensure, self.store, ask.conversation_id, key_id, ask.user_id)
        summary = self.mask(handoff.summarise(turns, reason))
        actor = f"key:{key_id}" if key_id else "system"
        ticket = await asyncio.to_thread(handoff.escalate, self.store, ask.conversation_id, reason, summary, actor)
        self.metrics.escalations.labels(reason.split(":")[0]).inc()
        plan.handoff = {"status": "escalated", "ticket_id": ticket, "reason": reason}
        p = self.cfg.persona
        plan.notice = f"{p.greeting}，已为您转接人工客服，请稍候。人工客服时间：{p.hours}。"

    async def _answer_plan(self, plan: Plan, question: str, history: list[dict[str, str]], turns: list[Any]) -> None:
        ask = plan.ask
        kb_version = await asyncio.to_thread(seams.kb_version, self.retriever) if self.retriever else "none"
        plan.context.kb_version = kb_version
        if ask.cacheable and not history and self.cache.enabled:
            plan.cached = await self.cache.get(question, ask.version.name, kb_version)
            self.metrics.cache.labels("hit" if plan.cached else "miss").inc()
            if plan.cached is not None:
                plan.context.citations = plan.cached.citations
                return
        if self.retriever is not None:
            plan.context = await asyncio.to_thread(seams.retrieve, self.retriever, question, history)
        # same composition as retrieval-aware training (kefu.rag.context.build_rag_sft)
        system = f"{self._system}\n\n{plan.context.text}" if plan.context.text else self._system
        if self.retriever is not None and not plan.context.text:
            system = f"{system}\n\n{seams.no_match_note(self.cfg.persona)}"
        plan.messages = sessions.trim(
            {"role": "system", "content": system}, list(turns), self.cfg.serve.session_token_budget, self._count
        )

    # ------------------------------------------------------------------ run
    async def run(self, plan: Plan, index: int) -> AsyncIterator[str]:
        """The text of choice `index`, clause by clause, as the customer may see it."""
        out = plan.outcomes[index]
        if plan.handoff is not None or plan.cached is not None or plan.verdict.injection:
            text = plan.cached.text if plan.cached else plan.notice
            out.text, out.ttft = text, time.perf_counter() - plan.started
            if text:
                yield text
            return
        params = plan.ask.params
        if index and params.seed is not None:
            params = dataclasses.replace(params, seed=params.seed + index)  # n choices must differ when seeded
        async for piece in self._generate(plan, out, params):
            if out.ttft is None:
                out.ttft = time.perf_counter() - plan.started
            out.text += piece
            yield piece

    async def _generate(self, plan: Plan, out: Outcome, params: GenParams) -> AsyncIterator[str]:
        stops, clauses = StopFilter(params.stop), ClauseBuffer()
        agen = self.engine.stream(plan.messages, params)
        try:
            async for chunk in agen:
                out.prompt_tokens, out.completion_tokens = chunk.prompt_tokens, chunk.completion_tokens
                out.finish_reason = chunk.finish_reason or out.finish_reason
                ready = clauses.feed(stops.feed(chunk.text))
                if ready:
                    yield self._guard(ready, out)
                if stops.stopped:
                    out.finish_reason = "stop"
                    break
        finally:
            await agen.aclose()  # type: ignore[attr-defined]  # a stop sequence or a gone client ends the generation, not just our reading
        tail = clauses.feed(stops.flush()) + clauses.flush()
        if tail:
            yield self._guard(tail, out)

    def _guard(self, clause: str, out: Outcome) -> str:
        safe, hits = seams.check_output(clause, self.cfg, self.have)
        for hit in hits:
            self.metrics.guard_hits.labels(hit).inc()
            out.guard_hits.append(hit)
        return safe

    # ------------------------------------------------------------------ finish
    async def finish(self, plan: Plan) -> None:
        """Store (masked), escalate when the model handed off, cache, audit, count."""
        ask, first = plan.ask, plan.outcomes[0]
        generated = plan.handoff is None and plan.cached is None and not plan.verdict.injection
        if generated and seams.model_handed_off(first.text, self.have):
            turns = [*ask.earlier, *({"role": "user", "content": t} for t in ask.new_user)]
            await self._escalate(plan, "model", turns)
            plan.notice = ""
        silent = plan.handoff is not None and plan.handoff["status"] == "with_agent"
        answer = None if silent else self.mask(first.text)
        key_id = ask.key.id if ask.key else None
        users = [self.mask(t) for t in ask.new_user]
        actor = f"key:{key_id}" if key_id else "anonymous"

        def events(message_id: int | None) -> list[audit.Event]:
            plan.message_id = message_id
            return [audit.Event(actor, "answer", self._audit_payload(plan))]

        fresh = ask.fresh and plan.handoff is None  # an escalation has already created the conversation's row
        exchange = sessions.Exchange(ask.conversation_id, users, answer, ask.version.name, key_id, ask.user_id, fresh)
        await self.audit.run(audit.AnswerJob(exchange, events))  # committed before the client hears it is complete
        if self._cache_worthy(plan):
            cached = Cached(text=first.text, citations=plan.context.citations)
            await self.cache.put(ask.new_user[-1], ask.version.name, plan.context.kb_version, cached)
        self._observe(plan)

    def _cache_worthy(self, plan: Plan) -> bool:
        """Only clean, complete, first-turn answers are worth serving again."""
        ask, first = plan.ask, plan.outcomes[0]
        fresh = ask.cacheable and plan.cached is None and plan.handoff is None and self.cache.enabled
        fresh = fresh and not plan.verdict.injection
        single = len(ask.new_user) == 1 and not ask.earlier
        return fresh and single and first.finish_reason == "stop" and not first.guard_hits

    def _audit_payload(self, plan: Plan) -> dict[str, Any]:
        first = plan.outcomes[0]
        return {
            "conversation_id": plan.ask.conversation_id,
            "message_id": plan.message_id,
            "route": plan.ask.route,
            "model_version": plan.ask.version.name,
            "kb_version": plan.context.kb_version,
            "guard": {"input": plan.verdict.hits, "output": sorted(set(first.guard_hits))},
            "handoff": plan.handoff,
            "cached": plan.cached is not None,
            "finish_reason": first.finish_reason,
            "latency_ms": round((time.perf_counter() - plan.started) * 1000, 1),
            "ttft_ms": None if first.ttft is None else round(first.ttft * 1000, 1),
            "tokens": {"prompt": first.prompt_tokens, "completion": first.completion_tokens},
        }

    def _observe(self, plan: Plan) -> None:
        version = plan.ask.version.name
        self.metrics.requests.labels(plan.ask.route, "200", version).inc()
        for out in plan.outcomes:
            if out.ttft is not None:
                self.metrics.ttft.labels(version).observe(out.ttft)
            if out.completion_tokens > 1 and out.ttft is not None:
                gen_time = time.perf_counter() - plan.started - out.ttft
                self.metrics.tpot.labels(version).observe(gen_time / (out.completion_tokens - 1))

    def mask(self, text: str) -> str:
        return seams.mask(text, self.cfg) if self.have["pii"] and self.cfg.guard.mask_pii else text

    def cancelled(self, plan: Plan) -> None:
        """The client went away mid-answer: nothing is stored, but the audit log says so."""
        payload = {**self._audit_payload(plan), "cancelled": True}
        key_id = plan.ask.key.id if plan.ask.key else None
        self.audit.submit(f"key:{key_id}" if key_id else "anonymous", "answer.cancelled", payload)
