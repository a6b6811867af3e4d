"""Keys, roles and rate limits: no route but /health and /metrics answers without a valid key of the right role."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from tests.serve.conftest import Server, make_cfg, start

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.serve import keys
from kefu.serve.app import create_app
from kefu.serve.auth import PUBLIC_PATHS
from kefu.serve.keys import KeyChecker

ADMIN_PREFIX = "/v1/admin"


def _walk(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every endpoint, descending into included routers (FastAPI keeps them nested)."""
    out = []
    for r in routes:
        if isinstance(r, APIRoute):
            path = re.sub(r"\{[^}]+\}", "1", prefix + r.path)
            out += [(m, path) for m in sorted(r.methods)]
        elif hasattr(r, "original_router"):
            out += _walk(r.original_router.routes, prefix + r.include_context.prefix)
        elif hasattr(r, "routes"):
            out += _walk(r.routes, prefix + getattr(r, "path", ""))
    return out


def _routes(server: Server) -> list[tuple[str, str]]:
    return _walk(server.app.routes)


def test_every_non_public_route_refuses_without_a_key(server: Server) -> None:
    routes = _routes(server)
    assert len(routes) >= 20 and any(p.startswith(ADMIN_PREFIX) for _, p in routes)
    bad = server.key("client")
    with httpx.Client(base_url=server.url) as http:
        for method, path in routes:
            if path in PUBLIC_PATHS:
                assert http.request(method, path).status_code == 200
                continue
            if path.startswith("/ui/"):  # the web UI's pages are static shells: their data needs a key
                r = http.request(method, path)
                assert r.status_code == 200 and "kefu_" not in r.text, path
                continue
            for headers in ({}, {"Authorization": "Bearer kefu_x_y"}, {"Authorization": "Basic abc"}):
                r = http.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, headers, r.status_code)
            if path.startswith(ADMIN_PREFIX):  # a client key is valid but not enough
                r = http.request(method, path, headers={"Authorization": f"Bearer {bad}"}, json={})
                assert r.status_code == 403, (method, path, r.status_code)


def test_docs_are_not_exposed(server: Server) -> None:
    for path in ("/docs", "/redoc"):
        assert httpx.get(server.url + path).status_code == 404
    assert httpx.get(server.url + "/openapi.json").status_code == 401  # the schema is for admin keys (tests/ui)


@pytest.mark.parametrize(
    ("role", "path", "allowed"),
    [
        ("client", "/v1/agent/tickets", False),
        ("agent", "/v1/agent/tickets", True),
        ("admin", "/v1/agent/tickets", True),
        ("agent", "/v1/admin/keys", False),
        ("admin", "/v1/admin/keys", True),
        ("client", "/v1/models", True),
    ],
)
def test_roles(server: Server, role: str, path: str, allowed: bool) -> None:
    r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.key(role)}"})
    assert r.status_code == (200 if allowed else 403)


def test_keys_are_peppered_hashes_and_revocable(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = server.svc.store
    secret = keys.create(store, "client")
    key_id, raw = secret.split("_", 2)[1:]
    with store.session() as s:
        row = s.get(keys.ApiKey, key_id)
        assert row is not None and raw not in row.hash and row.hash == keys.hash_secret(raw)
    monkeypatch.setenv("KEFU_KEY_PEPPER", "another-pepper")  # a different server secret: the hash no longer matches
    assert KeyChecker(store, ttl_s=0).check(secret) is None
    monkeypatch.delenv("KEFU_KEY_PEPPER")
    checker = KeyChecker(store, ttl_s=0)
    assert checker.check(secret) is not None
    keys.revoke(store, key_id)
    assert checker.check(secret) is None
    admin = server.key("admin")
    listed = httpx.get(f"{server.url}/v1/admin/keys", headers={"Authorization": f"Bearer {admin}"}).json()["data"]
    assert {"id": key_id, "revoked": True}.items() <= next(k for k in listed if k["id"] == key_id).items()


def test_admin_creates_and_revokes_keys_over_http(server: Server, engine: ScriptedEngine) -> None:
    engine.default = Reply.text("您好。")
    admin = {"Authorization": f"Bearer {server.key('admin')}"}
    made = httpx.post(f"{server.url}/v1/admin/keys", headers=admin, json={"role": "client", "name": "shop"}).json()
    body = {"model": "kefu", "messages": [{"role": "user", "content": "hi"}]}
    user = {"Authorization": f"Bearer {made['key']}"}
    assert httpx.post(f"{server.base}/chat/completions", headers=user, json=body).status_code == 200
    key_id = made["key"].split("_", 2)[1]
    assert httpx.delete(f"{server.url}/v1/admin/keys/{key_id}", headers=admin).status_code == 200
    time.sleep(server.svc.cfg.serve.key_cache_s + 0.1)
    assert httpx.post(f"{server.base}/chat/completions", headers=user, json=body).status_code == 401


def test_rate_limit_shared_through_redis(tmp_path, redis_prefix: str) -> None:  # type: ignore[no-untyped-def]
    """Two servers sharing Redis share one key's budget: the limit is per key, not per process."""
    from tests.serve.conftest import REDIS_URL

    sets = [f"serve.redis_url={REDIS_URL}", f"serve.redis_prefix={redis_prefix}", "serve.rate_limit_per_minute=3"]
    cfg = make_cfg(tmp_path, *sets)
    a = start(create_app(cfg, ScriptedEngine(default=Reply.text("您好。"))))
    b = start(create_app(cfg, ScriptedEngine(default=Reply.text("您好。"))))
    try:
        h = {"Authorization": f"Bearer {a.key()}"}
        body = {"model": "kefu", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
        codes = [httpx.post(f"{srv.base}/chat/completions", headers=h, json=body).status_code for srv in (a, b, a, b)]
    finally:
        a.stop()
        b.stop()
    if codes[-1] == 200:  # the minute window rolled over between requests: the 4th got a fresh budget
        pytest.skip("minute boundary crossed during the test")
    assert codes == [200, 200, 200, 429]
