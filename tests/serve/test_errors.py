"""Every error status of the contract, as the real `openai` SDK sees it: {"error": {message, type, param, code}}."""

from __future__ import annotations

import httpx
import openai
import pytest
from tests.serve.conftest import Server, make_cfg, start

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.serve.app import create_app

Q = [{"role": "user", "content": "在吗"}]


def _client(server: Server, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base, api_key=key or server.key(), max_retries=0)


def _err(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_400_last_message_not_user(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        _client(server).chat.completions.create(model="kefu", messages=[*Q, {"role": "assistant", "content": "在"}])
    assert _err(e.value)["code"] == "invalid_messages" and _err(e.value)["param"] == "messages"


def test_400_invalid_json(server: Server) -> None:
    r = httpx.post(
        f"{server.base}/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {server.key()}",
                                                                           "content-type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_401_missing_and_invalid_key(server: Server) -> None:
    r = httpx.post(f"{server.base}/chat/completions", json={"model": "kefu", "messages": Q})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as e:
        _client(server, "kefu_nope_nope").chat.completions.create(model="kefu", messages=Q)
    assert _err(e.value)["code"] == "invalid_api_key"


def test_403_wrong_role(server: Server) -> None:
    with pytest.raises(openai.PermissionDeniedError) as e:
        _client(server, server.key("agent")).chat.completions.create(model="kefu", messages=Q)
    assert _err(e.value)["code"] == "insufficient_role"


def test_404_unknown_model_and_route(server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        _client(server).chat.completions.create(model="gpt-4o", messages=Q)
    assert _err(e.value) == {
        "message": "model 'gpt-4o' does not exist; see GET /v1/models", "type": "not_found_error",
        "param": "model", "code": "model_not_found",
    }  # fmt: skip
    r = httpx.get(f"{server.url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_413_body_too_large(server: Server) -> None:
    big = [{"role": "user", "content": "啊" * 400_000}]  # > 1 MB of UTF-8
    with pytest.raises(openai.APIStatusError) as e:
        _client(server).chat.completions.create(model="kefu", messages=big)
    assert e.value.status_code == 413 and _err(e.value)["code"] == "request_too_large"


def test_422_invalid_field(server: Server) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as e:
        _client(server).chat.completions.create(model="kefu", messages=Q, temperature=5)
    assert _err(e.value)["param"] == "temperature"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        _client(server).chat.completions.create(model="kefu", messages=Q, n=0)
    assert _err(e.value)["param"] == "n"


def test_429_with_retry_after(server: Server, engine: ScriptedEngine) -> None:
    engine.default = Reply.text("您好。")
    client = _client(server, server.key("client", rate_limit=2))
    client.chat.completions.create(model="kefu", messages=Q)
    client.chat.completions.create(model="kefu", messages=Q)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="kefu", messages=Q)
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60
    assert _err(e.value)["code"] == "rate_limit_exceeded"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'kefu_requests_total{model_version="",route="/v1/chat/completions",status="429"} 1.0' in metrics
    assert "kefu_rate_limited_total 1.0" in metrics


def test_500_engine_bug_and_503_engine_down(server: Server, engine: ScriptedEngine) -> None:
    engine.queue(Reply(pieces=[], crash="boom"), Reply(pieces=[], fail="all replicas down"))
    client = _client(server)
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="kefu", messages=Q, temperature=0.5)
    assert e.value.status_code == 500 and _err(e.value)["message"] == "internal server error"  # no internals leak
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="kefu", messages=Q, temperature=0.5, stream=True)
    assert e.value.status_code == 503 and _err(e.value)["code"] == "engine_unavailable"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/chat/completions",status="500"} 1.0' in metrics
    assert 'route="/v1/chat/completions",status="503"} 1.0' in metrics


def test_cors_is_closed_by_default_and_explicit_when_set(tmp_path, server: Server) -> None:  # type: ignore[no-untyped-def]
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(f"{server.base}/chat/completions", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    srv = start(create_app(make_cfg(tmp_path / "b", "serve.cors_origins=[https://shop.example]"), ScriptedEngine()))
    try:
        ok = httpx.options(f"{srv.base}/chat/completions", headers=pre)
        bad = httpx.options(f"{srv.base}/chat/completions", headers={**pre, "Origin": "https://evil.example"})
    finally:
        srv.stop()
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in bad.headers
