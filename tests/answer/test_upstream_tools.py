"""Tools through the upstream engine: `tools` and `tool_choice` go to the OpenAI-compatible server (vLLM, SGLang),
which parses the model's calls itself; its streamed `tool_calls` come back to kefu's client whole, streamed and not,
and the shop's own actions run on them.

The upstream is a real HTTP server on loopback (FastAPI + uvicorn) answering as vLLM does with a tool parser on:
the call's id, type and name in one delta, its arguments in pieces, finish_reason "tool_calls", usage, [DONE]."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from kefu.answer.engines.base import GenParams
from kefu.answer.engines.upstream import UpstreamEngine
from kefu.answer.pipeline import AnswerPipeline
from kefu.serve.app import create_app
from tests.actions.conftest import Shop, actions_cfg
from tests.serve.conftest import free_port, make_cfg, start

PARAMS = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
TOOLS: Any = [
    {"type": "function", "function": {"name": name, "description": what, "parameters": PARAMS}}
    for name, what in (("get_order", "查询订单"), ("get_refund", "查询退款"))
]
TEXT = "您好，订单已发货。"


@dataclass
class Upstream:
    """The fake vLLM: the request bodies it got, and the calls it answers with whenever it is offered tools."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    calls: list[tuple[str, dict[str, Any]]]
    bodies: list[dict[str, Any]] = field(default_factory=list)


def _event(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return _event(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


async def _answer(up: Upstream, body: dict[str, Any]) -> AsyncIterator[str]:
    yield _chunk({"role": "assistant", "content": ""})
    if not body.get("tools"):
        yield _chunk({"content": TEXT})
        yield _chunk({}, "stop")
    else:
        for i, (name, args) in enumerate(up.calls):
            head = {"index": i, "id": f"chatcmpl-tool-{i}", "type": "function",
                    "function": {"name": name, "arguments": ""}}  # fmt: skip
            yield _chunk({"tool_calls": [head]})
            text = json.dumps(args, ensure_ascii=False)
            for piece in (text[:5], text[5:12], text[12:]):  # vLLM streams the arguments as the model writes them
                yield _chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield _chunk({}, "tool_calls")
    yield _event(
        {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 7}}
    )
    yield "data: [DONE]\n\n"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    app = FastAPI()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    up = Upstream(f"http://127.0.0.1:{port}/v1", server, threading.Thread(target=server.run, daemon=True),
                  [("get_order", {"order_id": "DD20260101"})])  # fmt: skip

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        up.bodies.append(body)
        assert body["stream"] is True  # kefu always streams from an upstream
        return StreamingResponse(_answer(up, body), media_type="text/event-stream")

    up.thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and up.thread.is_alive(), "fake upstream did not start"
        time.sleep(0.01)
    yield up
    server.should_exit = True
    up.thread.join(timeout=30)


def _streamed_calls(chunks: list[Any]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The calls a streamed response carried (deltas put together by index) and its finish reasons."""
    parts: dict[int, dict[str, str]] = {}
    for c in chunks:
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            part = parts.setdefault(d.index, {"name": "", "arguments": ""})
            part["name"] += (d.function and d.function.name) or ""
            part["arguments"] += (d.function and d.function.arguments) or ""
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return [(p["name"], json.loads(p["arguments"])) for _, p in sorted(parts.items())], finish


def test_the_upstreams_tool_calls_reach_the_client(upstream: Upstream, tmp_path: Path) -> None:
    upstream.calls.append(("get_refund", {"order_id": "DD20260102"}))  # parallel calls, in their order
    cfg = make_cfg(tmp_path, "serve.engine=upstream", f"serve.upstreams=[{upstream.url}]", "serve.upstream_model=m")
    gw = start(create_app(cfg))
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
        ask = [{"role": "user", "content": "DD20260101 到哪了，DD20260102 退款了吗"}]
        r = client.chat.completions.create(model="kefu", messages=ask, tools=TOOLS)  # type: ignore[arg-type]
        got = [(c.function.name, json.loads(c.function.arguments)) for c in r.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
        assert got == upstream.calls and r.choices[0].finish_reason == "tool_calls"
        assert upstream.bodies[-1]["tools"] == TOOLS and "tool_choice" not in upstream.bodies[-1]  # auto
        chunks = list(client.chat.completions.create(model="kefu", messages=ask, tools=TOOLS, stream=True))  # type: ignore[arg-type]
        assert _streamed_calls(chunks) == (upstream.calls, ["tool_calls"])
    finally:
        gw.stop()


def test_tool_choice_and_the_tool_turns_go_upstream(upstream: Upstream, tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, "serve.engine=upstream", f"serve.upstreams=[{upstream.url}]", "serve.upstream_model=m")
    gw = start(create_app(cfg))
    try:
        client = openai.OpenAI(base_url=gw.base, api_key=gw.key(), max_retries=0)
        ask: Any = [{"role": "user", "content": "DD20260101 到哪了"}]
        client.chat.completions.create(model="kefu", messages=ask, tools=TOOLS, tool_choice="required")
        assert upstream.bodies[-1]["tool_choice"] == "required"
        named: Any = {"type": "function", "function": {"name": "get_refund"}}
        client.chat.completions.create(model="kefu", messages=ask, tools=TOOLS, tool_choice=named)
        assert upstream.bodies[-1]["tool_choice"] == named and upstream.bodies[-1]["tools"] == TOOLS[1:]
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_order", "arguments": '{"order_id": "DD20260101"}'},
        }
        history = [*ask, {"role": "assistant", "content": None, "tool_calls": [call]},
                   {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'}]  # fmt: skip
        r = client.chat.completions.create(model="kefu", messages=history, tools=TOOLS, tool_choice="none")
        assert r.choices[0].message.content == TEXT and "tools" not in upstream.bodies[-1]
        sent = upstream.bodies[-1]["messages"]
        assert sent[-2]["tool_calls"] == [call]  # arguments as the JSON string the OpenAI API carries
        assert sent[-1] == {"role": "tool", "content": '{"status": "shipped"}', "tool_call_id": "call_1"}
    finally:
        gw.stop()


def test_the_shops_actions_run_on_the_upstreams_call(upstream: Upstream, shop: Shop, tmp_path: Path) -> None:
    order = shop.shipped_order("C1001")
    upstream.calls[:] = [("order_tracking", {"order_id": order})]
    cfg = actions_cfg(tmp_path, shop.url)
    cfg.actions.model_calls = True
    pipeline = AnswerPipeline(cfg, UpstreamEngine([upstream.url], model="m"))

    async def ask() -> Any:
        try:
            return await pipeline.answer([{"role": "user", "content": f"帮我看一下 {order}"}], GenParams(),
                                         customer_id="C1001")  # fmt: skip
        finally:
            await pipeline.engine.close()  # type: ignore[attr-defined]

    answer = asyncio.run(ask())  # no trigger word: the model (upstream) decides
    assert shop.latest_event(order)[1] in answer.text
    assert [(a["name"], a["source"], a["status"]) for a in answer.actions] == [("order_tracking", "model", "ok")]
    assert upstream.bodies[-1]["tools"] == pipeline.actions.tools()
