"""The shop-action step of a turn: which action a customer's message runs, a write asked to be confirmed and run
only on the customer's yes in the next message (kefu.answer.confirm), the model's own call of an action run in
place of its text, and an audit record of each. kefu.answer.actions makes the backend calls and words the replies;
this step decides, for one turn (a `Prepared`), what runs and what the customer is told.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kefu.answer.actions import ActionCall, ActionResult, Actions
from kefu.answer.asking import ask_for_number
from kefu.answer.confirm import Pending, is_confirmation, owner_of
from kefu.answer.engines.base import Chunk
from kefu.answer.toolcalls import CallSplitter, split_calls
from kefu.answer.turn import Prepared
from kefu.config import KefuConfig
from kefu.data.pii import map_strings, unmasking
from kefu.guard.notices import confirm_question, declined, greeting

UNPARSEABLE = "unparseable"  # the name a malformed model call runs under: answered as bad arguments


class ActionStep:
    """One shop's actions as a step of the answer pipeline (no storage: the caller keeps `Prepared.pending`)."""

    def __init__(self, cfg: KefuConfig, actions: Actions, mask: Callable[[str], str]) -> None:
        self.cfg, self.actions, self.mask = cfg, actions, mask

    def choose(self, prep: Prepared, question: str, before: str, pending: Pending | None) -> None:
        """The action this message runs: a confirmed pending write, else what the message asks for. A pending write
        this message does not confirm is cancelled (audited as declined), and the customer is told."""
        waiting = pending if pending and pending.owner == owner_of(prep.customer_id) and pending.fresh() else None
        if waiting is not None:
            call = ActionCall(waiting.name, waiting.arguments, waiting.source, confirmed=True)  # type: ignore[arg-type]
            if is_confirmation(question, self.cfg.actions.confirm_words):
                prep.call = call
                return
            prep.declined = waiting
            prep.actions.append(self.record(ActionResult(dataclasses.replace(call, confirmed=False), "declined")))
        prep.call = self.actions.select(question, before) or self._ask_number(prep, question)
        if prep.call is None and waiting is not None:
            zh, en = self.actions.what(ActionCall(waiting.name, waiting.arguments))
            prep.action, prep.notice = "act", declined(self.cfg.persona, zh, en, prep.lang)

    def _ask_number(self, prep: Prepared, question: str) -> ActionCall | None:
        """The action this message wants without its order number, to be asked for (the number sent next runs it);
        only for a signed-in customer: without one nothing could be looked up anyway."""
        if not prep.customer_id:
            return None
        return self.actions.missing_number(question, "\n".join(t["content"] or "" for t in prep.turns))

    def act(self, prep: Prepared, call: ActionCall) -> None:
        """Run one shop action (blocking HTTP) and answer with its result in the customer's language."""
        prep.action, prep.notice = "act", self.run(prep, call)

    def run(self, prep: Prepared, call: ActionCall) -> str:
        """The customer's answer to one action: a write not yet confirmed is only asked about (after its check
        lookup passed); anything else runs. Blocking HTTP: call it in a thread."""
        if call.missing:  # nothing runs: the customer is asked for the order number
            hint = self.actions.number_hint(call, prep.lang)
            asked = ask_for_number(self.cfg.persona, prep.lang, hint, self.actions.is_write(call))
            return self._after_declined(prep, asked)
        if self.actions.is_write(call) and not call.confirmed:
            return self._ask_to_confirm(prep, call)
        result = self.actions.run(call, prep.customer_id)
        prep.actions.append(self.record(result))
        spec = self.actions.by_name.get(call.name)
        if spec is not None and result.handoff_passed(spec):
            prep.escalate = f"action:{call.name}"[:32]
        return self._after_declined(prep, self.actions.reply(result, prep.lang))

    def _after_declined(self, prep: Prepared, text: str) -> str:
        """The customer moved on from a write waiting for their yes: say it was not done, then answer."""
        if prep.declined is None:
            return text
        zh, en = self.actions.what(ActionCall(prep.declined.name, prep.declined.arguments))
        rest = text.removeprefix(greeting(self.cfg.persona, prep.lang))  # one greeting for both
        first = declined(self.cfg.persona, zh, en, prep.lang)
        return f"{first}\n{rest[:1].upper()}{rest[1:]}" if prep.lang == "en" else first + rest

    async def model_call(self, prep: Prepared, call: ActionCall | None) -> str:
        """The model called an action: run it like a rule-chosen one; its reply replaces the model's text. The
        placeholders it copied from the masked conversation become the customer's own values again."""
        if call is not None and prep.said:  # found here, once a call is made, not for every answer
            originals = unmasking(prep.said, self.cfg.data.pii)
            call = dataclasses.replace(call, arguments=_unmasked(call.arguments, originals))
        return await asyncio.to_thread(self.run, prep, call or ActionCall(UNPARSEABLE, {}, "model"))

    def record(self, result: ActionResult) -> dict[str, Any]:
        """The audit entry, its text arguments (a new address) PII-masked like every stored customer text."""
        rec = result.record()
        rec["arguments"] = map_strings(rec["arguments"], self.mask)
        return rec

    def _ask_to_confirm(self, prep: Prepared, call: ActionCall) -> str:
        spec = self.actions.by_name[call.name]
        checked = self.actions.precheck(call, prep.customer_id)
        if spec.check and checked.status == "ok":  # e.g. the order lookup: is it this customer's order at all?
            props = self.actions.by_name[spec.check].parameters.get("properties", {})
            args = {k: v for k, v in call.arguments.items() if k in props}
            checked = self.actions.run(ActionCall(spec.check, args, call.source), prep.customer_id)
        if checked.status != "ok":  # not this customer's order, no customer, bad number: nothing to confirm
            prep.actions.append(self.record(dataclasses.replace(checked, call=call)))
            return self.actions.reply(dataclasses.replace(checked, call=call), prep.lang)
        prep.actions.append(self.record(ActionResult(call, "awaiting_confirmation")))
        prep.pending = Pending(call.name, call.arguments, owner_of(prep.customer_id), call.source)
        zh, en = self.actions.what(call)
        return confirm_question(self.cfg.persona, zh, en, prep.lang)


def _unmasked(args: dict[str, Any], originals: dict[str, str]) -> dict[str, Any]:
    def put_back(text: str) -> str:
        for holder, said in originals.items():
            text = text.replace(holder, said)
        return text

    return dict(map_strings(args, put_back))


async def divert_calls(
    chunks: AsyncIterator[Chunk], splitter: CallSplitter, run: Callable[[ActionCall | None], Awaitable[str]]
) -> AsyncIterator[Chunk]:
    """The engine's answer, except that the model's first call (in its own format, read by `splitter`, or parsed by
    the engine itself) ends generation and `run(call)` supplies the rest of the text; a malformed call runs as None.
    The call itself is never shown; text the model wrote before it is."""
    splitter.bad_as_text = False
    parts = split_calls(chunks, splitter)  # text chunks, each call as it completes, then the rest of its chunk
    call: ActionCall | None = None
    try:
        async for part in parts:
            if not isinstance(part, Chunk):
                call = call or ActionCall(part.name, part.arguments, "model")
                continue
            if call is None and not splitter.bad:
                yield part
                continue
            text = "" if call else part.text  # after a call nothing more is shown; before a malformed one it is
            yield Chunk(text + await run(call), "stop", part.prompt_tokens, part.completion_tokens)
            return
    finally:
        await parts.aclose()  # type: ignore[attr-defined]  # stops the engine's generation
