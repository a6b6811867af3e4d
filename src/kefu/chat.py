"""`kefu chat`: talk to the assistant in the terminal, streaming, with multi-turn history.

Every answer goes through the answer pipeline (kefu.answer.pipeline), so the terminal shows what a customer of
`kefu serve` would read: the persona's prompt, the knowledge base, the guards and the notices. The engine is the
local model (base + optional adapter) or an OpenAI-compatible endpoint (`--url`, e.g. vLLM); `--raw` talks to the
bare model (persona prompt only, no knowledge base, no guards). `--customer` signs the terminal in as one of the
shop's customers, so shop actions look up their orders; a write waits for their "确认" in the next message, kept in
the session as `kefu serve` keeps it per conversation.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kefu.answer.confirm import Pending
from kefu.answer.engines.base import Engine, EngineUnavailable, GenParams
from kefu.answer.pipeline import AnswerPipeline, Messages, Outcome
from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.guard.notices import notice

HELP = "Type a message; /reset clears the conversation, /exit quits."


def open_chat_engine(cfg: KefuConfig, model: str | None, adapter: Path | None, url: str | None,
                     api_key: str | None) -> Engine:  # fmt: skip
    """The endpoint at `url`, else the local model (model.path / model.adapter, or the flags' overrides)."""
    if url:
        from kefu.answer.engines.upstream import UpstreamEngine

        return UpstreamEngine([url], model=cfg.serve.upstream_model or "kefu", api_key=api_key)
    from kefu.answer.engines import open_engine

    update = {k: str(v) for k, v in {"path": model, "adapter": adapter}.items() if v is not None}
    serve = cfg.serve.model_copy(update={"engine": "local", "max_batch_size": 1})
    return open_engine(cfg.model_copy(update={"model": cfg.model.model_copy(update=update), "serve": serve}))


@dataclass
class Session:
    """One terminal conversation: its turns, the customer signed in (shop actions look up only theirs), and the
    write asked to be confirmed, which only the next message can confirm (as `kefu serve` keeps it)."""

    customer_id: str | None = None
    history: Messages = field(default_factory=list)
    pending: Pending | None = None

    def reset(self) -> Messages:
        """Start over: returns the conversation that ended; its pending write ends with it."""
        done, self.history, self.pending = self.history, [], None
        return done


async def answer(pipeline: AnswerPipeline, session: Session, out: TextIO) -> str:
    """Stream the answer to the session's newest message to `out` as it arrives; returns the full text. An engine
    that cannot answer gets the persona's 'busy' notice, as a customer would."""
    prep = pipeline.screen(session.history, customer_id=session.customer_id, pending=session.pending)
    await asyncio.to_thread(pipeline.ground, prep)
    session.pending = prep.pending  # asked now, or None: this message confirmed, declined or moved past it
    params = GenParams(max_tokens=pipeline.cfg.serve.max_new_tokens, temperature=0.0)
    result = Outcome()
    try:
        async for piece in pipeline.stream(prep, params, result):
            out.write(piece)
            out.flush()
    except EngineUnavailable:
        result.text = notice(pipeline.cfg.persona, "busy", prep.lang)
        out.write(result.text)
    out.write("\n")
    out.flush()
    return result.text.strip()


async def repl(
    pipeline: AnswerPipeline,
    read: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
    customer_id: str | None = None,
) -> list[Messages]:
    """The interactive loop: keeps the conversation until /exit (or end of input); returns each conversation."""
    session = Session(customer_id)
    done: list[Messages] = []
    out.write(HELP + "\n")
    while True:
        try:
            line = (await asyncio.to_thread(read, "> ")).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            done.append(session.reset())
            out.write("(conversation cleared)\n")
            continue
        if line:
            session.history.append({"role": "user", "content": line})
            session.history.append({"role": "assistant", "content": await answer(pipeline, session, out)})
    return [*done, session.history]


def run_chat(
    cfg: KefuConfig,
    *,
    adapter: Path | None = None,
    model: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    once: str | None = None,
    raw: bool = False,
    customer: str | None = None,
) -> None:
    """`kefu chat`: one answer with `once`, else an interactive session; `customer` is the signed-in customer."""
    if url and (adapter or model):
        raise KefuError("chat: --url talks to a running server; --adapter/--model only apply to a local model")

    async def session() -> None:
        engine = open_chat_engine(cfg, model, adapter, url, api_key)
        pipeline = AnswerPipeline(cfg, engine, raw=raw)
        status = "ok" if raw or not pipeline.kb.expected else await asyncio.to_thread(pipeline.kb.status)
        if status != "ok":  # what a customer would get now: the no-match notice for every question
            sys.stderr.write(f"warning: knowledge base {status}: {pipeline.kb.last_error} (run `kefu kb ingest`)\n")
        try:
            if pipeline.model_calls:  # the actions are rendered by the model's template: refuse one that cannot
                await pipeline.tool_format(None)
            if once is not None:
                await answer(pipeline, Session(customer, [{"role": "user", "content": once}]), sys.stdout)
            else:
                await repl(pipeline, customer_id=customer)
        finally:
            close = getattr(engine, "close", None)
            if close is not None:
                await close()

    asyncio.run(session())
