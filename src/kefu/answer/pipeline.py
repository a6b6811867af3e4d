"""The answer pipeline: one customer turn, from the conversation to the answer the customer may read. No storage.

    conversation -> input guards (injection: refusal notice; handoff: handoff notice)
                 -> PII masked out of every customer text (before any engine, local or upstream)
                 -> retrieval (excerpts carrying an injection are dropped)
                 -> prompt (the persona's system prompt + excerpts, trimmed to the token budget)
                 -> engine -> stop sequences -> output guard (streaming; generation stops when it rules)
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
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kefu.answer.actions import ActionCall, ActionResult, Actions, divert_tool_call
from kefu.answer.confirm import Pending, is_confirmation, owner_of
from kefu.answer.engines.base import Chunk, Engine, GenParams
from kefu.answer.knowledge import Context, KBUnavailable, KnowledgeBase
from kefu.answer.prompt import Counter, Messages, approx_tokens, last_user, system_text, trim
from kefu.answer.textstream import StopFilter
from kefu.answer.toolcalls import CallSplitter, ToolFormat, ToolsUnsupported, forced_prefix, split_calls
from kefu.config import KefuConfig
from kefu.data.persona import system_prompt
from kefu.data.pii import mask as pii_mask
from kefu.data.schema import ToolCall
from kefu.guard.handoff import is_handoff_answer
from kefu.guard.input import InputVerdict, check_input
from kefu.guard.lang import detect_lang
from kefu.guard.notices import confirm_question, declined, greeting, notice
from kefu.guard.output import AnswerGuard, Policy

# A rule hook looks at the (PII-masked) conversation, newest last, and returns a reason to hand it to a human
# (e.g. "refund_over_limit"), or None.
HandoffRule = Callable[[Messages], str | None]
Action = Literal["answer", "handoff", "refuse", "no_match", "with_agent", "act"]  # act: a shop action answered


@dataclass
class Prepared:
    """One turn as the pipeline decided it: what to do, the masked conversation and, to answer, the prompt."""

    turns: Messages  # the conversation with every customer text PII-masked, newest user turn last
    lang: str
    started: float
    action: Action = "answer"
    reason: str | None = None  # why it goes to a human: "user" or "rule:NAME"
    notice: str = ""  # the text sent instead of an answer (action != "answer")
    verdict: InputVerdict = field(default_factory=InputVerdict)
    context: Context = field(default_factory=Context)
    messages: Messages = field(default_factory=list)  # what the engine is asked
    customer_id: str | None = None  # the customer the shop's front end authenticated (shop actions only)
    call: ActionCall | None = None  # a shop action this turn runs instead of generating
    actions: list[dict[str, Any]] = field(default_factory=list)  # audit records of the actions run
    # A client's own tools (OpenAI `tools`): the model sees them and its calls go back to the client, not run here.
    tools: list[dict[str, Any]] | None = None
    tool_format: ToolFormat | None = None  # how the engine's model writes calls (set with tools or tool turns)
    one_call: bool = False  # parallel_tool_calls false: the answer ends at its first call
    forced: str = ""  # the start of a call the answer is made to begin with (tool_choice required or named)
    pending: Pending | None = None  # a write waiting for the customer's yes: the caller keeps it for the next turn
    declined: Pending | None = None  # the write that waited and this message did not confirm (not run)
    escalate: str | None = None  # an action's rule hands the conversation to a human after this answer


@dataclass
class Outcome:
    """One generated choice: the text released to the customer and how it went."""

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    guard_hits: list[str] = field(default_factory=list)  # names of the output guards that fired
    guard_details: list[str] = field(default_factory=list)  # one line per finding, for the audit event
    original: str | None = None  # what the model said when a guard replaced it (PII-masked): a DPO 'rejected'
    ttft: float | None = None  # seconds from Prepared.started to the first released text
    total: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)  # calls of the client's tools the model made


@dataclass
class Answer:
    """A whole turn's result, as eval, chat and the demo use it."""

    text: str
    action: Action
    lang: str
    handoff: str | None  # "user", "rule:NAME", "model", or None
    citations: list[dict[str, Any]]
    guard: dict[str, list[str]]  # {"input": rule reasons, "output": guard names}
    kb_version: str
    ttft_s: float | None
    total_s: float
    completion_tokens: int
    finish_reason: str
    actions: list[dict[str, Any]] = field(default_factory=list)  # shop actions run (ActionResult.record())
    pending: Pending | None = None  # a write asked to be confirmed: pass it to the next turn's answer()


def _mask_args(call: dict[str, Any], mask: Callable[[str], str]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, dict):
        fn = {**fn, "arguments": {k: mask(v) if isinstance(v, str) else v for k, v in args.items()}}
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
            self._choose(prep, question, said_before[-1] if said_before else "", pending)
        return prep

    async def use_tools(
        self, prep: Prepared, tools: list[dict[str, Any]] | None, target: str | None, force: bool | str = False
    ) -> None:
        """A client's tools for this turn (None: only its tool turns, if any): checks the engine's model renders
        and writes tool calls (ToolsUnsupported otherwise) and remembers how. `force`: the answer must be a call
        (True) or a call of the function named (OpenAI tool_choice "required" / a named function)."""
        if not tools and not tools_in(prep.turns):
            return
        fmt = getattr(self.engine, "tool_format", None)
        if fmt is None:
            raise ToolsUnsupported(f"engine {self.engine.name!r}: tools need a local engine (hf or onnx)")
        prep.tool_format, prep.tools = await fmt(target), tools
        if tools:
            prep.call = None  # the client's tools: the model's call goes back to the client, no rule-chosen action
            if force:
                prep.forced = forced_prefix(prep.tool_format, force if isinstance(force, str) else None)

    def _choose(self, prep: Prepared, question: str, before: str, pending: Pending | None) -> None:
        """The action this message runs: a confirmed pending write, else what the message asks for. A pending write
        this message does not confirm is cancelled (audited as declined), and the customer is told."""
        waiting = pending if pending and pending.owner == owner_of(prep.customer_id) and pending.fresh() else None
        if waiting is not None:
            call = ActionCall(waiting.name, waiting.arguments, waiting.source, confirmed=True)  # type: ignore[arg-type]
            if is_confirmation(question, self.cfg.actions.confirm_words):
                prep.call = call
                return
            prep.declined = waiting
            prep.actions.append(self._record(ActionResult(dataclasses.replace(call, confirmed=False), "declined")))
        prep.call = self.actions.select(question, before)
        if prep.call is None and waiting is not None:
            zh, en = self.actions.what(ActionCall(waiting.name, waiting.arguments))
            prep.action, prep.notice = "act", declined(self.cfg.persona, zh, en, prep.lang)

    def with_agent(self, turns: Messages, started: float | None = None) -> Prepared:
        """A turn of a conversation a human agent has taken over: the bot only says so."""
        prep = self._prepared(turns, started)
        self._decide(prep, "with_agent", "with_agent")
        return prep

    def _prepared(self, turns: Messages, started: float | None) -> Prepared:
        # Assistant turns too: a stateless client sends its own copy of the history, which may carry anything.
        masked = [self._masked_turn(t) for t in turns]
        return Prepared(masked, _lang(turns), time.perf_counter() if started is None else started)

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
            self._act(prep, prep.call)
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
        if self.model_calls and prep.tool_format is None:  # the shop's own actions, unless the client brings tools
            system += self.actions.tools_prompt()
        budget = self.cfg.serve.session_token_budget
        prep.messages = trim({"role": "system", "content": system}, prep.turns, budget, self._count)

    def _act(self, prep: Prepared, call: ActionCall) -> None:
        """Run one shop action (blocking HTTP) and answer with its result in the customer's language."""
        prep.action, prep.notice = "act", self._run_action(prep, call)

    def _run_action(self, prep: Prepared, call: ActionCall) -> str:
        """The customer's answer to one action: a write not yet confirmed is only asked about (after its check
        lookup passed); anything else runs. Blocking HTTP: call it in a thread."""
        if self.actions.is_write(call) and not call.confirmed:
            return self._ask_to_confirm(prep, call)
        result = self.actions.run(call, prep.customer_id)
        prep.actions.append(self._record(result))
        spec = self.actions.by_name.get(call.name)
        if spec is not None and result.handoff_passed(spec):
            prep.escalate = f"action:{call.name}"[:32]
        text = self.actions.reply(result, prep.lang)
        if prep.declined is not None:  # the customer moved on: say the waiting write was not done, then answer
            zh, en = self.actions.what(ActionCall(prep.declined.name, prep.declined.arguments))
            rest = text.removeprefix(greeting(self.cfg.persona, prep.lang))  # one greeting for both
            first = declined(self.cfg.persona, zh, en, prep.lang)
            text = f"{first}\n{rest[:1].upper()}{rest[1:]}" if prep.lang == "en" else first + rest
        return text

    def _record(self, result: ActionResult) -> dict[str, Any]:
        """The audit entry, its text arguments (a new address) PII-masked like every stored customer text."""
        rec = result.record()
        rec["arguments"] = {k: self.mask(v) if isinstance(v, str) else v for k, v in rec["arguments"].items()}
        return rec

    def _ask_to_confirm(self, prep: Prepared, call: ActionCall) -> str:
        spec = self.actions.by_name[call.name]
        checked = self.actions.precheck(call, prep.customer_id)
        if spec.check and checked.status == "ok":  # e.g. the order lookup: is it this customer's order at all?
            props = self.actions.by_name[spec.check].parameters.get("properties", {})
            args = {k: v for k, v in call.arguments.items() if k in props}
            checked = self.actions.run(ActionCall(spec.check, args, call.source), prep.customer_id)
        if checked.status != "ok":  # not this customer's order, no customer, bad number: nothing to confirm
            prep.actions.append(self._record(dataclasses.replace(checked, call=call)))
            return self.actions.reply(dataclasses.replace(checked, call=call), prep.lang)
        prep.actions.append(self._record(ActionResult(call, "awaiting_confirmation")))
        prep.pending = Pending(call.name, call.arguments, owner_of(prep.customer_id), call.source)
        zh, en = self.actions.what(call)
        return confirm_question(self.cfg.persona, zh, en, prep.lang)

    async def _model_call(self, prep: Prepared, call: ActionCall | None) -> str:
        """The model wrote a <tool_call>: run it like a rule-chosen action; its reply replaces the model's text."""
        return await asyncio.to_thread(self._run_action, prep, call or ActionCall("unparseable", {}, "model"))

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

    def _engine_stream(self, prep: Prepared, params: GenParams) -> AsyncIterator[Chunk | ToolCall]:
        """The engine's answer; with tools in play, the model's calls split out of its text."""
        if prep.tool_format is None:
            agen: AsyncIterator[Any] = self.engine.stream(prep.messages, params)
            if self.model_calls:
                agen = divert_tool_call(agen, functools.partial(self._model_call, prep))
            return agen
        params = dataclasses.replace(params, tools=prep.tools, prefix=prep.forced)
        return split_calls(self.engine.stream(prep.messages, params), CallSplitter(prep.tool_format), prep.forced)

    async def _generate(self, prep: Prepared, params: GenParams, out: Outcome) -> AsyncIterator[str | ToolCall]:
        # The output guard releases whole sentences that passed (PII masked); a violation stops generation and
        # its finish() brings the replacement. Raw answers go out as generated. Tool calls bypass both: they are
        # the client's to run, not text a customer reads.
        stops = StopFilter(params.stop)
        guard = None if self.raw else AnswerGuard(self.policy, prep.lang, prep.context.excerpts)
        agen = self._engine_stream(prep, params)
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
        if guard.stopped:  # kept for the flywheel: the safe answer sent is 'chosen', this is 'rejected'
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
