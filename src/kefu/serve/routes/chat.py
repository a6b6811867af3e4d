"""POST /v1/chat/completions (OpenAI contract, SSE streaming), POST /chat (minimal widget API), and
GET /v1/conversations/{id}/messages (the customer's side of a conversation, e.g. to read an agent's reply).

Sessions: with `kefu.conversation_id`, the server owns the history: only the user messages after the last
assistant message in the request are new, earlier turns come from the store. Without it, the request is
stateless (the client sends the whole history) and the exchange is stored under a new id returned in
`kefu.conversation_id`. Client system messages are ignored: the persona's system prompt is authoritative.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kefu.answer.engines.base import EngineUnavailable, GenParams
from kefu.answer.pipeline import Outcome
from kefu.data.schema import ToolCall
from kefu.guard.lang import detect_lang
from kefu.guard.notices import notice
from kefu.serve import handoff
from kefu.serve.auth import ChatKey
from kefu.serve.errors import ApiError, error_body
from kefu.serve.keys import KeyInfo
from kefu.serve.messages import conversation_turns
from kefu.serve.pipeline import Ask, Pipeline, Plan
from kefu.serve.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    KefuResponse,
    SimpleChatRequest,
    SimpleChatResponse,
    Usage,
    chunk_dict,
    completion_id,
    new_id,
    now,
)
from kefu.serve.routes.live import check_reader
from kefu.serve.versions import Version

router = APIRouter()
log = logging.getLogger("kefu.serve")
MAX_TOKENS_LIMIT = 8192


def resolve_version(request: Request, model: str, sticky: str) -> Version:
    svc = request.app.state.kefu
    routing = svc.routing
    if model == svc.cfg.serve.model_name:
        picked = routing.pick(sticky)
        if picked is None:
            raise ApiError(503, "no model version is active", "no_active_model")
        return picked
    if model in routing.by_name:
        return routing.by_name[model]
    raise ApiError(404, f"model {model!r} does not exist; see GET /v1/models", "model_not_found", "model")


def _split(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(earlier turns, new turns): new = what follows the last assistant answer (an assistant message without tool
    calls): the customer's messages, and with tools the assistant's calls and their results."""
    turns = conversation_turns(req.messages)
    if not turns or turns[-1]["role"] not in ("user", "tool"):
        raise ApiError(400, "the last message must be a user (or tool) message", "invalid_messages", "messages")
    cut = len(turns)
    while cut > 0 and not (turns[cut - 1]["role"] == "assistant" and not turns[cut - 1].get("tool_calls")):
        cut -= 1
    if not any(t["role"] == "user" for t in turns[cut:]):
        raise ApiError(400, "no user message after the last assistant answer", "invalid_messages", "messages")
    return turns[:cut], turns[cut:]


def to_ask(request: Request, req: ChatCompletionRequest, key: KeyInfo) -> Ask:
    cfg = request.app.state.kefu.cfg
    earlier, new = _split(req)
    new_user = [t["content"] for t in new if t["role"] == "user"]
    with_tools = bool(req.tools) or any(t["role"] != "user" for t in new)
    max_tokens = req.max_tokens or req.max_completion_tokens or cfg.serve.max_new_tokens
    if max_tokens > MAX_TOKENS_LIMIT:
        raise ApiError(400, f"max_tokens {max_tokens} is over the limit of {MAX_TOKENS_LIMIT}", "invalid_value",
                       "max_tokens")  # fmt: skip
    ext = req.kefu
    cid = (ext.conversation_id if ext else None) or new_id("conv")
    user_id = (ext.user_id if ext else None) or req.user
    sticky = cid if ext and ext.conversation_id else (user_id or cid)
    version = resolve_version(request, req.model, sticky)
    params = GenParams(
        max_tokens=max_tokens, temperature=req.temperature if req.temperature is not None else 0.0,
        top_p=req.top_p if req.top_p is not None else 1.0, seed=req.seed, stop=req.stops(), model=version.target,
    )  # fmt: skip
    cacheable = params.temperature == 0.0 and req.seed is None and req.n == 1 and not with_tools
    stored = bool(ext and ext.conversation_id) and not with_tools  # a tool turn runs on the client's history
    return Ask(
        conversation_id=cid, key=key, user_id=user_id, earlier=[] if stored else earlier, new_user=new_user,
        params=params, version=version, n=req.n, handoff_requested=bool(ext and ext.handoff), cacheable=cacheable,
        fresh=not (ext and ext.conversation_id), new_turns=new if with_tools else None, tools=req.offered_tools(),
        parallel_tool_calls=req.parallel_tool_calls is not False, force_tool=req.forced_tool(),
    )  # fmt: skip


def kefu_field(plan: Plan) -> KefuResponse:
    return KefuResponse(
        conversation_id=plan.ask.conversation_id, citations=plan.prep.context.citations, handoff=plan.handoff,
        model_version=plan.ask.version.name, kb_version=plan.prep.context.kb_version, cached=plan.cached is not None,
    )  # fmt: skip


def usage(plan: Plan) -> Usage:
    prompt = plan.outcomes[0].prompt_tokens
    completion = sum(o.completion_tokens for o in plan.outcomes)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _collect(pipeline: Pipeline, plan: Plan, index: int) -> None:
    async for _ in pipeline.run(plan, index):
        pass


async def merged(pipeline: Pipeline, plan: Plan) -> AsyncIterator[tuple[int, str | ToolCall]]:
    """(choice index, text or tool call) from all n choices as they come; one choice needs no task machinery."""
    if plan.ask.n == 1:
        async for piece in pipeline.run(plan, 0):
            yield 0, piece
        return
    queue: asyncio.Queue[tuple[int, str | ToolCall | BaseException | None]] = asyncio.Queue()

    async def pump(i: int) -> None:
        try:
            async for piece in pipeline.run(plan, i):
                await queue.put((i, piece))
            await queue.put((i, None))
        except BaseException as e:
            await queue.put((i, e))

    tasks = [asyncio.create_task(pump(i)) for i in range(plan.ask.n)]
    try:
        for _ in range(plan.ask.n):
            while True:
                i, item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield i, item
    finally:
        for t in tasks:
            t.cancel()


def message(out: Outcome) -> dict[str, Any]:
    """A choice's assistant message; with tool calls, content is null when the model said nothing else."""
    if not out.tool_calls:
        return {"role": "assistant", "content": out.text}
    calls = [tool_call_dict(c) for c in out.tool_calls]
    return {"role": "assistant", "content": out.text.strip() or None, "tool_calls": calls}


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json()}}


def deltas(piece: str | ToolCall, calls: list[int], choice: int) -> list[dict[str, Any]]:
    """The stream deltas of one piece: text as content; a tool call as OpenAI streams one (its id, type and name
    first with empty arguments, then the arguments)."""
    if isinstance(piece, str):
        return [{"content": piece}]
    k, calls[choice] = calls[choice], calls[choice] + 1
    head = {"index": k, "id": piece.id, "type": "function", "function": {"name": piece.name, "arguments": ""}}
    body = {"index": k, "function": {"arguments": piece.arguments_json()}}
    return [{"tool_calls": [head]}, {"tool_calls": [body]}]


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _closing(req: ChatCompletionRequest, plan: Plan, cid: str, created: int) -> bytes:
    """Each choice's finish chunk (with the kefu extension), then the usage chunk when asked for."""
    out = b""
    for i, o in enumerate(plan.outcomes):
        last = chunk_dict(cid, req.model, created, i, {}, o.finish_reason)
        last["kefu"] = kefu_field(plan).model_dump()
        out += _sse(last)
    if req.stream_options and req.stream_options.include_usage:
        tail = chunk_dict(cid, req.model, created, 0, {})
        tail["choices"], tail["usage"] = [], usage(plan).model_dump()
        out += _sse(tail)
    return out


async def _stream(
    request: Request, req: ChatCompletionRequest, plan: Plan, release: Callable[[], None]
) -> StreamingResponse:
    svc = request.app.state.kefu
    cid, created, model = completion_id(), now(), req.model
    pieces = merged(svc.pipeline, plan)
    first = await anext(pieces, None)  # engine failures before the first token still get a proper status

    async def body() -> AsyncIterator[bytes]:
        # The role chunks go out with the first text, and the closing chunks together: fewer socket writes.
        try:
            opening = b"".join(
                _sse(chunk_dict(cid, model, created, i, {"role": "assistant", "content": ""}))
                for i in range(plan.ask.n)
            )
            calls = [0] * plan.ask.n  # tool calls sent so far, per choice: the index of the next one
            if first is not None:
                i, piece = first
                opening += b"".join(_sse(chunk_dict(cid, model, created, i, d)) for d in deltas(piece, calls, i))
            yield opening
            async for i, piece in pieces:
                yield b"".join(_sse(chunk_dict(cid, model, created, i, d)) for d in deltas(piece, calls, i))
            await svc.pipeline.finish(plan)
            yield _closing(req, plan, cid, created) + b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            svc.pipeline.cancelled(plan)
            raise
        except EngineUnavailable as e:
            yield _sse(error_body(503, f"generation failed: {e}", "engine_unavailable")) + b"data: [DONE]\n\n"
        except Exception:
            log.exception("stream failed")
            yield _sse(error_body(500, "internal server error", "internal_error")) + b"data: [DONE]\n\n"
        finally:
            release()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def answer(request: Request, req: ChatCompletionRequest, key: KeyInfo, route: str) -> Plan | StreamingResponse:
    svc = request.app.state.kefu
    ask = to_ask(request, req, key)
    ask.route = route
    svc.metrics.in_flight.inc()
    streaming = False
    try:
        plan = await svc.pipeline.prepare(ask)
        plan.outcomes = [Outcome() for _ in range(ask.n)]
        if req.stream:
            response = await _stream(request, req, plan, svc.metrics.in_flight.dec)
            streaming = True  # the stream's body counts itself out when it ends
            return response
        await asyncio.gather(*(_collect(svc.pipeline, plan, i) for i in range(ask.n)))
        await svc.pipeline.finish(plan)
        return plan
    finally:
        if not streaming:
            svc.metrics.in_flight.dec()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, req: ChatCompletionRequest, key: ChatKey
) -> ChatCompletion | StreamingResponse:
    result = await answer(request, req, key, "chat.completions")
    if isinstance(result, StreamingResponse):
        return result
    plan = result
    choices = [Choice(index=i, message=message(o), finish_reason=o.finish_reason) for i, o in enumerate(plan.outcomes)]
    return ChatCompletion(
        id=completion_id(), created=now(), model=req.model, choices=choices, usage=usage(plan), kefu=kefu_field(plan)
    )


@router.post("/chat")
async def simple_chat(request: Request, req: SimpleChatRequest, key: ChatKey) -> SimpleChatResponse:
    svc = request.app.state.kefu
    full = ChatCompletionRequest.model_validate(
        {"model": svc.cfg.serve.model_name, "messages": [{"role": "user", "content": req.question}],
         "kefu": {"conversation_id": req.conversation_id or new_id("conv")}}
    )  # fmt: skip
    try:
        plan = await answer(request, full, key, "chat")
    except EngineUnavailable:  # the widget's customer gets the persona's "busy" notice, not an HTTP error
        text = notice(svc.cfg.persona, "busy", detect_lang(req.question))
        cid = full.kefu.conversation_id if full.kefu else None
        return SimpleChatResponse(answer=text, citations=[], handoff=False, conversation_id=cid or "")
    assert isinstance(plan, Plan)
    return SimpleChatResponse(
        answer=plan.outcomes[0].text, citations=plan.prep.context.citations, handoff=plan.handoff is not None,
        conversation_id=plan.ask.conversation_id,
    )  # fmt: skip


@router.get("/v1/conversations/{conversation_id}/messages")
async def conversation_messages(request: Request, conversation_id: str, key: ChatKey, after: int = 0) -> dict[str, Any]:
    """A customer reads their conversation, including agent replies while it is handed off."""
    svc = request.app.state.kefu
    status = await check_reader(svc, conversation_id, key)
    rows = await asyncio.to_thread(handoff.messages, svc.store, conversation_id, after)
    return {"conversation_id": conversation_id, "status": status, "messages": rows}
