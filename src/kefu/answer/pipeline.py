"""The answer pipeline: one customer turn, from the conversation to the answer the customer may read. No storage.

    conversation -> input guards (injection: refusal notice; handoff: handoff notice)
                 -> PII masked out of every customer text (before any engine, local or upstream)
                 -> shop action the message asks for or confirms (kefu.answer.acting): run instead of the engine
                 -> retrieval (excerpts carrying an injection are dropped)
                 -> prompt (the persona's system prompt + excerpts, trimmed to the token budget; the tools shown,
                    a client's or the shop's actions, rendered by the engine with the model's own chat template)
                 -> engine -> the model's call of a shop action run in place of its answer
                 -> stop sequences -> output guard (streaming; generation stops when it rules)
                 -> model-initiated handoff

Every notice comes from kefu.guard.notices in the customer's language. `kefu serve` (kefu.serve.pipeline adds
sessions, store, cache, audit and metrics), `kefu eval`, `kefu chat` and the demo all answer through this class, so
what eval scores is what a customer gets. `raw=True` is the bare model: persona prompt, no retrieval, no guards.

Use `answer()` for a whole turn, or its steps when a caller needs to act between them (the gateway looks in its
cache after `screen`, and streams several choices of one `ground`ed prompt):
`screen(turns)` -> `ground(prepared)` (blocking: retrieval) -> `stream(prepared, params, outcome)` ->
`model_handoff(prepared, outcome)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from kefu.answer.acting import ActionStep, divert_calls
from kefu.answer.actions import Actions
from kefu.answer.confirm import Pending
from kefu.answer.engines.base import Chunk, Engine, GenParams
from kefu.answer.knowledge import KBUnavailable, KnowledgeBase
from kefu.answer.prompt import Counter, Messages, approx_tokens, last_user, system_text, trim
from kefu.answer.textstream import StopFilter
from kefu.answer.toolcalls import (
    CallSplitter,
    ToolFormat,
    ToolsUnsupported,
    forced_prefix,
    split_calls,
    tool_names,
)
from kefu.answer.turn import Action, Answer, Outcome, Prepared
from kefu.config import KefuConfig
from kefu.data.persona import system_prompt
from kefu.data.pii import map_strings
from kefu.data.pii import mask as pii_mask
from kefu.data.schema import ToolCall
from kefu.guard.handoff import is_handoff_answer
from kefu.guard.input import check_input
from kefu.guard.lang import detect_lang
from kefu.guard.notices import notice
from kefu.guard.output import AnswerGuard, Policy

__all__ = ["Action", "Answer", "AnswerPipeline", "HandoffRule", "Messages", "Outcome", "Prepared", "tools_in"]

# A rule hook looks at the (PII-masked) conversation, newest last, and returns a reason to hand it to a human
# (e.g. "refund_over_limit"), or None.
HandoffRule = Callable[[Messages], str | None]


def _mask_args(call: dict[str, Any], mask: Callable[[str], str]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, dict):
        fn = {**fn, "arguments": map_strings(args, mask)}
    return {**call, "function": fn}


def tools_in(turns: Messages) -> bool:
    """Whether a conversation holds tool calls or tool results."""
    return any(t.get("tool_calls") or t["role"] == "tool" for t in turns)


def _opens_think(engine: Engine) -> bool:
    """Whether the local engine's chat template ends its generation prompt with an open <think> block."""
    tok = getattr(engine, "tok", None)
    if tok is None or getattr(tok, "chat_template", None) is None:
        return False
    prompt = tok.apply_chat_template([{"role": "user", "content": "?"}], add_generation_prompt=True, tokenize=False)
    return str(prompt).rstrip().endswith("<think>")


_CODES = re.compile(r"\b[A-Za-z]*\d[A-Za-z\d]*\b")  # order and tracking numbers (DD2026…): no language
_WORDS = re.compile(r"[^\W\d_]")


def _lang(turns: Messages) -> str:
    """The newest customer message's language; one that is only a number ("DD2026…", answering "订单号是多少？")
    keeps the language the customer wrote in before."""
    said = [t["content"] for t in turns if t["role"] == "user"] or [turns[-1]["content"]]
    for text in reversed(said):
        words = _CODES.sub(" ", text)
        if _WORDS.search(words):
            return detect_lang(words)
    return detect_lang(said[-1])


class AnswerPipeline:
    def __init__(
        self, cfg: KefuConfig, engine: Engine, kb: KnowledgeBase | None = None,
        rules: list[HandoffRule] | None = None, raw: bool = False,
    ) -> None:  # fmt: skip
        self.cfg, self.engine, self.raw = cfg, engine, raw
        self.kb = kb if kb is not None else KnowledgeBase(cfg)
        self.rules = rules or []
        self.system = system_prompt(cfg.persona)
        self.policy = Policy.from_config(cfg, self.system)
        if _opens_think(engine):  # e.g. DeepSeek-R1 templates: the answer starts inside reasoning
            self.policy = dataclasses.replace(self.policy, think_open=True)
        # The system prompt and knowledge-base passages recur in almost every prompt: count each text once.
        counter: Counter = getattr(engine, "count_tokens", None) or approx_tokens
        self._count: Counter = functools.lru_cache(maxsize=1024)(counter)
        # A conversation's earlier turns come back with every new message: mask each text once.
        self._mask = functools.lru_cache(maxsize=4096)(functools.partial(pii_mask, cfg=cfg.data.pii))
        self.actions = Actions(cfg.actions, cfg.persona, self.mask)
        self.acting = ActionStep(cfg, self.actions, self.mask)
        self.model_calls = cfg.actions.model_calls and bool(cfg.actions.tools) and not raw

    def mask(self, text: str) -> str:
        """PII-masked text (guard.mask_pii, kinds from data.pii); order and tracking numbers stay."""
        return self._mask(text) if self.cfg.guard.mask_pii else text

    # ------------------------------------------------------------------ screen
    def screen(
        self, turns: Messages, handoff_requested: bool = False, started: float | None = None,
        customer_id: str | None = None, pending: Pending | None = None,
    ) -> Prepared:  # fmt: skip
        """Input guards on the newest customer message; the conversation masked; the shop action it asks for (run
        by `ground`). Cheap: no I/O. `customer_id` is whom the shop authenticated: actions look up only theirs.
        `pending` is the write the previous turn asked to confirm (Prepared.pending), kept by the caller."""
        asked = last_user(turns)
        question = turns[asked]["content"]
        prep = self._prepared(turns, started)
        if self.raw:
            return prep
        prep.customer_id = customer_id
        said_before = [t["content"] for t in turns[:asked] if t["role"] == "user"]
        prep.verdict = check_input(question, said_before, self.cfg.guard)
        reason = "user" if handoff_requested or prep.verdict.handoff else self._rule(prep.turns)
        if reason is not None:
            self._decide(prep, "handoff", "handoff", reason)
        elif prep.verdict.injection:  # the model never sees an injection attempt; the persona refuses
            self._decide(prep, "refuse", "refusal")
        elif not tools_in(turns):  # a conversation with tools: the model decides its calls
            self.acting.choose(prep, question, said_before[-1] if said_before else "", pending)
        return prep

    async def use_tools(
        self, prep: Prepared, tools: list[dict[str, Any]] | None, target: str | None, force: bool | str = False
    ) -> None:
        """A client's tools for this turn (None: only its tool turns, if any): checks the engine's model renders
        and writes tool calls (ToolsUnsupported otherwise) and remembers how. `force`: the answer must be a call
        (True) or a call of the function named (OpenAI tool_choice "required" / a named function)."""
        if not tools and not tools_in(prep.turns):
            return
        prep.tool_format, prep.tools = await self.tool_format(target), tools
        if tools:
            prep.call = None  # the client's tools: the model's call goes back to the client, no rule-chosen action
            prep.force_tool = force
            if force:
                prep.forced = forced_prefix(prep.tool_format, force if isinstance(force, str) else None)

    async def tool_format(self, target: str | None) -> ToolFormat:
        """How the engine's model (version `target`) writes calls; ToolsUnsupported when it cannot. With
        actions.model_calls on, call it at start-up: every answer needs it."""
        fmt = getattr(self.engine, "tool_format", None)
        if fmt is None:
            raise ToolsUnsupported(f"engine {self.engine.name!r} does not render or parse tool calls")
        return await fmt(target)

    def with_agent(self, turns: Messages, started: float | None = None) -> Prepared:
        """A turn of a conversation a human agent has taken over: the bot only says so."""
        prep = self._prepared(turns, started)
        self._decide(prep, "with_agent", "with_agent")
        return prep

    def _prepared(self, turns: Messages, started: float | None) -> Prepared:
        # Assistant turns too: a stateless client sends its own copy of the history, which may carry anything.
        masked = [self._masked_turn(t) for t in turns]
        prep = Prepared(masked, _lang(turns), time.perf_counter() if started is None else started)
        if self.model_calls and self.cfg.guard.mask_pii:
            prep.said = [t["content"] or "" for t in turns if t["role"] == "user"]
        return prep

    def _masked_turn(self, turn: dict[str, Any]) -> dict[str, Any]:
        """The turn with its text masked, and the string arguments of its tool calls (they quote the customer)."""
        out = {**turn, "content": self.mask(turn["content"] or "")}
        if turn.get("tool_calls"):
            out["tool_calls"] = [_mask_args(c, self.mask) for c in turn["tool_calls"]]
        return out

    def _rule(self, turns: Messages) -> str | None:
        for rule in self.rules:
            name = rule(turns)
            if name:
                return f"rule:{name}"[:32]
        return None

    def _decide(self, prep: Prepared, action: Action, kind: Any, reason: str | None = None) -> None:
        prep.action, prep.reason, prep.notice = action, reason, notice(self.cfg.persona, kind, prep.lang)

    # ------------------------------------------------------------------ ground
    def ground(self, prep: Prepared) -> None:
        """Retrieve excerpts and build the engine's prompt. Blocking (embedding, store reads): run it in a thread."""
        if prep.action != "answer":
            return
        if prep.call is not None:
            self.acting.act(prep, prep.call)
            return
        if not self.raw:
            try:
                asked = last_user(prep.turns)
                prep.context = self.kb.lookup(prep.turns[asked]["content"], prep.turns[:asked])
            except KBUnavailable:  # an expected KB is missing or failing: say so politely, never guess policy
                self._decide(prep, "no_match", "no_match")
                return
        ctx = prep.context
        system = system_text(self.system, ctx.text, self.cfg.persona, ctx.searched)
        tools = self.shown_tools(prep)  # the chat template renders them into the prompt: they take tokens too
        tools_cost = self._count(json.dumps(tools, ensure_ascii=False)) if tools else 0
        budget = self.cfg.serve.session_token_budget - tools_cost
        prep.messages = trim({"role": "system", "content": system}, prep.turns, budget, self._count)

    def shown_tools(self, prep: Prepared) -> list[dict[str, Any]] | None:
        """The tools the model is shown this turn: the client's own, else the shop's actions (actions.model_calls)."""
        if prep.tool_format is not None:
            return prep.tools
        return self.actions.tools() if self.model_calls else None

    def engine_params(self, prep: Prepared, params: GenParams) -> GenParams:
        """What the engine is asked besides `prep.messages`: the tools shown, which the engine renders with the
        model's own chat template exactly as training renders tool conversations (kefu.answer.toolcalls.render),
        and for a forced call, its start (local engines) or OpenAI's tool_choice (an upstream)."""
        tools = self.shown_tools(prep)
        return dataclasses.replace(params, tools=tools, prefix=prep.forced, force_tool=prep.force_tool)

    # ------------------------------------------------------------------ stream
    async def stream(self, prep: Prepared, params: GenParams, out: Outcome) -> AsyncIterator[str]:
        """The answer as the customer may see it, piece by piece; `out` records text, tokens, hits and timing (and
        the calls of a client's tools, in `out.tool_calls`)."""
        async for piece in self.stream_parts(prep, params, out):
            if isinstance(piece, str):
                yield piece

    async def stream_parts(self, prep: Prepared, params: GenParams, out: Outcome) -> AsyncIterator[str | ToolCall]:
        """`stream`, with each call of the client's tools yielded as it completes (the OpenAI API streams them)."""
        if prep.action != "answer":
            out.text = prep.notice
            out.ttft = out.total = time.perf_counter() - prep.started
            yield prep.notice
            return
        async for piece in self._generate(prep, params, out):
            if piece:
                out.ttft = out.ttft if out.ttft is not None else time.perf_counter() - prep.started
                if isinstance(piece, str):
                    out.text += piece
                else:
                    out.tool_calls.append(piece)
                yield piece
        if out.tool_calls:
            out.finish_reason = "tool_calls"
        out.total = time.perf_counter() - prep.started

    async def _engine_stream(self, prep: Prepared, params: GenParams) -> AsyncIterator[Chunk | ToolCall]:
        """The engine's answer; a client's tools: the model's calls split out of its text; the shop's actions: the
        model's call run in place of its answer."""
        params = self.engine_params(prep, params)
        names = tool_names(params.tools)  # a call of one, its call token mis-written, is still a call
        if prep.tool_format is not None:
            splitter = CallSplitter(prep.tool_format, names=names)
            return split_calls(self.engine.stream(prep.messages, params), splitter, prep.forced)
        if not self.model_calls:
            return self.engine.stream(prep.messages, params)
        fmt = await self.tool_format(params.model)  # before generating: ToolsUnsupported
        splitter = CallSplitter(fmt, names=names)
        run = functools.partial(self.acting.model_call, prep)
        return divert_calls(self.engine.stream(prep.messages, params), splitter, run)

    async def _generate(self, prep: Prepared, params: GenParams, out: Outcome) -> AsyncIterator[str | ToolCall]:
        # The output guard releases whole sentences that passed (PII masked); a violation stops generation and
        # its finish() brings the replacement. Raw answers go out as generated. Tool calls bypass both: they are
        # the client's to run, not text a customer reads.
        stops = StopFilter(params.stop)
        asked = str(prep.turns[last_user(prep.turns)]["content"] or "") if prep.turns else ""
        guard = None if self.raw else AnswerGuard(self.policy, prep.lang, prep.context.excerpts, asked)
        agen = await self._engine_stream(prep, params)
        said: list[str] = []
        try:
            async for chunk in agen:
                if isinstance(chunk, ToolCall):
                    yield chunk
                    if prep.one_call:
                        break
                    continue
                out.prompt_tokens, out.completion_tokens = chunk.prompt_tokens, chunk.completion_tokens
                out.finish_reason = chunk.finish_reason or out.finish_reason
                text = stops.feed(chunk.text)
                said.append(text)
                yield guard.feed(text) if guard is not None and text else text
                if stops.stopped or (guard is not None and guard.stopped):
                    out.finish_reason = "stop"  # a stop sequence, or the guard ruled: no more tokens are needed
                    break
        finally:
            await agen.aclose()  # type: ignore[attr-defined]  # stops the engine's generation, not just our reading
        tail = stops.flush()
        if guard is None:
            yield tail
            return
        last = (guard.feed(tail) if tail else "") + guard.finish()
        out.guard_hits, out.guard_details = list(guard.hits), list(guard.details)
        if guard.rewrote:  # kept for the flywheel: the answer sent is 'chosen', the model's own 'rejected'
            out.original = self.mask("".join(said) + tail)
        yield last

    # ------------------------------------------------------------------ after
    def model_handoff(self, prep: Prepared, out: Outcome) -> bool:
        """The model itself said a human will take over (the gateway then escalates the conversation)."""
        return not self.raw and prep.action == "answer" and bool(is_handoff_answer(out.text))

    async def answer(
        self,
        turns: Messages,
        params: GenParams,
        handoff_requested: bool = False,
        customer_id: str | None = None,
        pending: Pending | None = None,
    ) -> Answer:
        """A whole turn: screen, ground (a shop action, or retrieval), generate (guarded), detect a model handoff.
        `pending`: the previous turn's Answer.pending (a write waiting for this message to confirm it)."""
        prep = self.screen(turns, handoff_requested, customer_id=customer_id, pending=pending)
        await asyncio.to_thread(self.ground, prep)
        out = Outcome()
        async for _ in self.stream(prep, params, out):
            pass
        handoff = prep.reason or prep.escalate or ("model" if self.model_handoff(prep, out) else None)
        ctx = prep.context
        return Answer(
            text=out.text.strip(), action=prep.action, lang=prep.lang, handoff=handoff, citations=ctx.citations,
            guard={"input": prep.verdict.reasons, "output": out.guard_hits}, kb_version=ctx.kb_version,
            ttft_s=out.ttft, total_s=out.total, completion_tokens=out.completion_tokens,
            finish_reason=out.finish_reason, actions=prep.actions, pending=prep.pending,
        )  # fmt: skip
