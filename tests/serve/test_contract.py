"""The OpenAI Chat Completions contract, exercised with the real `openai` SDK against a running server."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from tests.serve.conftest import Server

from kefu.answer.engines.scripted import Reply, ScriptedEngine

Q = [{"role": "user", "content": "退货要几天？"}]


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base, api_key=server.key("client"), max_retries=0)


def test_non_streaming_fields(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好，签收后7天内可以申请退货。")
    r = client.chat.completions.create(model="kefu", messages=Q, max_tokens=64)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "kefu"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "您好，签收后7天内可以申请退货。"
    assert r.choices[0].finish_reason == "stop" and r.choices[0].index == 0
    assert r.usage is not None and r.usage.completion_tokens == 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    ext = r.model_extra["kefu"]  # type: ignore[index]
    assert ext["model_version"] == "base" and ext["conversation_id"].startswith("conv-")
    # the engine got the persona's system prompt first and the user turn last
    sent = engine.calls[-1].messages
    assert sent[0]["role"] == "system" and "客服" in sent[0]["content"] and sent[-1] == Q[0]


def test_sampling_params_reach_the_engine(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好。")
    client.chat.completions.create(model="kefu", messages=Q, max_tokens=7, temperature=0.7, top_p=0.9, seed=11)
    p = engine.calls[-1].params
    assert (p.max_tokens, p.temperature, p.top_p, p.seed) == (7, 0.7, 0.9, 11)


def test_length_finish(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好，这是一个很长的回答。")
    r = client.chat.completions.create(model="kefu", messages=Q, max_tokens=3, temperature=0.5)
    assert r.choices[0].message.content == "您好，"
    assert r.choices[0].finish_reason == "length"


def test_streaming_chunks(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好，可以退。七天内都行。")
    chunks = list(
        client.chat.completions.create(
            model="kefu", messages=Q, stream=True, stream_options={"include_usage": True}, temperature=0.3
        )
    )
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "您好，可以退。七天内都行。"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 13
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "kefu_in_flight_requests 0.0" in httpx.get(f"{server.url}/metrics").text


def test_stream_without_usage_has_no_usage_chunk(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好。")
    chunks = list(client.chat.completions.create(model="kefu", messages=Q, stream=True, temperature=0.3))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_raw_sse_ends_with_done(server: Server, engine: ScriptedEngine) -> None:
    engine.queue("您好。")
    body = {"model": "kefu", "messages": Q, "stream": True, "temperature": 0.2}
    headers = {"Authorization": f"Bearer {server.key()}"}
    with httpx.stream("POST", f"{server.base}/chat/completions", json=body, headers=headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]" and all(ln.startswith("data: ") for ln in lines)


@pytest.mark.parametrize("stream", [False, True])
def test_stop_never_emitted_even_across_chunks(
    server: Server, engine: ScriptedEngine, client: openai.OpenAI, stream: bool
) -> None:
    # "END" arrives split over three chunks; neither it nor anything after it may reach the client
    engine.queue(Reply(pieces=["您好，", "订单已发货", "E", "N", "D", "后面不该出现"]))
    r = client.chat.completions.create(model="kefu", messages=Q, stop=["END", "xyz"], stream=stream, temperature=0.1)
    chunks = list(r) if stream else []  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) if stream else None
    text = text if stream else r.choices[0].message.content  # type: ignore[union-attr]
    assert text == "您好，订单已发货"
    assert engine.calls[-1].cancelled  # generation stopped at the stop sequence


def test_partial_stop_prefix_is_released(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue(Reply(pieces=["价格E", "N", "X结束"]))  # "EN" looked like the start of "END" but was not
    r = client.chat.completions.create(model="kefu", messages=Q, stop="END", temperature=0.1)
    assert r.choices[0].message.content == "价格ENX结束"


def test_n_choices(server: Server, engine: ScriptedEngine, client: openai.OpenAI) -> None:
    engine.queue("您好，甲。", "您好，乙。")
    r = client.chat.completions.create(model="kefu", messages=Q, n=2, temperature=0.8)
    assert sorted(c.message.content or "" for c in r.choices) == ["您好，乙。", "您好，甲。"]
    assert [c.index for c in r.choices] == [0, 1]
    engine.queue("您好，丙。", "您好，丁。")
    chunks = list(client.chat.completions.create(model="kefu", messages=Q, n=2, stream=True, temperature=0.8))
    by_index: dict[int, str] = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            by_index[ch.index] += ch.delta.content or ""
    assert sorted(by_index.values()) == ["您好，丁。", "您好，丙。"]


def test_async_client_and_streaming(server: Server, engine: ScriptedEngine) -> None:
    engine.default = Reply.text("您好，异步。")

    async def go() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=server.base, api_key=server.key(), max_retries=0)
        r = await client.chat.completions.create(model="kefu", messages=Q, temperature=0.2)
        stream = await client.chat.completions.create(model="kefu", messages=Q, stream=True, temperature=0.2)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return r.choices[0].message.content or "", text

    assert asyncio.run(go()) == ("您好，异步。", "您好，异步。")


def test_models_list(server: Server, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["kefu", "base"]


def test_langchain_chat_openai(server: Server, engine: ScriptedEngine) -> None:
    from langchain_openai import ChatOpenAI

    engine.default = Reply.text("您好，我是小客。")
    llm = ChatOpenAI(base_url=server.base, api_key=server.key(), model="kefu", temperature=0.1, max_retries=0)
    assert llm.invoke("你是谁").content == "您好，我是小客。"
    assert "".join(str(c.content) for c in llm.stream("你是谁")) == "您好，我是小客。"


def test_minimal_chat_api_and_feedback(server: Server, engine: ScriptedEngine) -> None:
    key = server.key()
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
    engine.queue("您好，请问订单号是多少？", "您好，已为您查询，正在配送中。")
    first = http.post("/chat", json={"question": "我的快递到哪了"}).json()
    assert first["answer"] == "您好，请问订单号是多少？" and first["handoff"] is False and first["citations"] == []
    cid = first["conversation_id"]
    second = http.post("/chat", json={"question": "订单 A123", "conversation_id": cid}).json()
    assert second["conversation_id"] == cid and second["answer"] == "您好，已为您查询，正在配送中。"
    assert [m["role"] for m in engine.calls[-1].messages] == ["system", "user", "assistant", "user"]
    assert http.post("/v1/feedback", json={"conversation_id": cid, "rating": "down"}).status_code == 200
    fix = {"conversation_id": cid, "correction": "您好，订单A123已发货，预计明天送达。"}
    assert http.post("/v1/feedback", json=fix).status_code == 403  # customers rate; agents correct
    agent = {"Authorization": f"Bearer {server.key('agent')}"}
    assert httpx.post(f"{server.url}/v1/feedback", json=fix, headers=agent).status_code == 200
    assert http.post("/v1/feedback", json={"conversation_id": cid}).status_code == 400
