"""Response cache: keyed on normalised question + model version + KB version, dropped when a version changes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
from tests.serve.conftest import REDIS_URL, Server, make_cfg, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve import versions
from kefu.serve.app import create_app
from kefu.serve.cache import normalise


def _ask(client: openai.OpenAI, q: str) -> tuple[str, dict]:
    r = client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": q}])
    return r.choices[0].message.content or "", r.model_extra["kefu"]  # type: ignore[index]


def test_normalise() -> None:
    assert normalise("  退货要几天？ ") == normalise("退货要几天") == normalise("退货要几天?")
    assert normalise("Return  POLICY!") == "return policy"
    assert normalise("退货要几天") != normalise("换货要几天")


def _new_version(server: Server, tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    versions.register(server.svc.store, name, "adapter", str(folder))
    versions.promote(server.svc.store, name)


def _wait_for_version(client: openai.OpenAI, name: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if [m.id for m in client.models.list()][1:] == [name]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not served within {timeout}s")


def test_hit_miss_and_invalidation(server: Server, engine: ScriptedEngine, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=server.base, api_key=server.key(), max_retries=0)
    engine.queue("您好，签收后7天内可退。", "您好，新版本的回答。")
    first, ext1 = _ask(client, "退货要几天？")
    again, ext2 = _ask(client, " 退货要几天")
    assert again == first and not ext1["cached"] and ext2["cached"] and len(engine.calls) == 1
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'kefu_cache_total{result="hit"} 1.0' in metrics and "kefu_cache_hit_rate 0.5" in metrics
    # sampling or a conversation history bypasses the cache
    client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": "退货要几天"}], temperature=0.9,
                                   extra_body={})  # fmt: skip
    assert len(engine.calls) == 2
    _new_version(server, tmp_path, "v2")  # as `kefu models promote` would, from outside the server
    _wait_for_version(client, "v2")
    engine.queue("您好，v2 的回答。")
    text, ext = _ask(client, "退货要几天？")
    assert text == "您好，v2 的回答。" and not ext["cached"] and ext["model_version"] == "v2"


def test_shared_cache_through_redis(tmp_path: Path, redis_prefix: str) -> None:
    cfg = make_cfg(tmp_path, f"serve.redis_url={REDIS_URL}", f"serve.redis_prefix={redis_prefix}")
    ea, eb = ScriptedEngine(), ScriptedEngine()
    a, b = start(create_app(cfg, ea)), start(create_app(cfg, eb))
    try:
        key = a.key()
        ca = openai.OpenAI(base_url=a.base, api_key=key, max_retries=0)
        cb = openai.OpenAI(base_url=b.base, api_key=key, max_retries=0)
        ea.queue("您好，A 生成的回答。")
        assert _ask(ca, "发票怎么开")[0] == "您好，A 生成的回答。"
        text, ext = _ask(cb, "发票怎么开？")
        assert text == "您好，A 生成的回答。" and ext["cached"] and not eb.calls  # B never generated
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        assert list(r.scan_iter(match=f"{redis_prefix}cache:base:*"))
        _new_version(a, tmp_path, "v3")
        _wait_for_version(cb, "v3")
        time.sleep(0.3)  # both servers' pollers saw the change and dropped the old answers
        assert not list(r.scan_iter(match=f"{redis_prefix}cache:*"))
        eb.queue("您好，v3 的回答。")
        text, ext = _ask(cb, "发票怎么开")
        assert text == "您好，v3 的回答。" and not ext["cached"]
    finally:
        a.stop()
        b.stop()
