"""The UI's own JSON routes against a real gateway: dashboard numbers, search, training marks (SQLite and
PostgreSQL), and their refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.serve.conftest import make_cfg, pg_url, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve.app import create_app
from kefu.serve.tables import TrainingMark

__all__ = ["pg_url"]  # the fixture, shared with tests/serve


@pytest.fixture(params=["sqlite", "postgresql"])
def overrides(request: pytest.FixtureRequest) -> list[str]:
    return [] if request.param == "sqlite" else [f"serve.db_url={request.getfixturevalue('pg_url')}"]


def _call(url: str, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10, **kw)


def test_dashboard_search_and_training_marks(tmp_path: Path, overrides: list[str]) -> None:
    engine = ScriptedEngine()
    srv = start(create_app(make_cfg(tmp_path, *overrides), engine))
    try:
        admin, client, agent = srv.key("admin"), srv.key("client"), srv.key("agent")
        engine.queue("您好，运费由卖家承担。", "您好，一般48小时内发货。")
        for cid, q in (("c-1", "运费谁出？"), ("c-2", "什么时候发货？")):
            body = {"model": "kefu", "messages": [{"role": "user", "content": q}], "kefu": {"conversation_id": cid}}
            assert _call(srv.url, client, "POST", "/v1/chat/completions", json=body).status_code == 200
        up = _call(srv.url, client, "POST", "/v1/feedback", json={"conversation_id": "c-1", "rating": "up"}).json()
        down = _call(srv.url, client, "POST", "/v1/feedback", json={"conversation_id": "c-2", "rating": "down"}).json()
        fix = {"conversation_id": "c-2", "rating": "down", "correction": "您好，付款后24小时内发货。"}
        corrected = _call(srv.url, agent, "POST", "/v1/feedback", json=fix).json()

        o = _call(srv.url, admin, "GET", "/v1/admin/ui/overview").json()
        assert o["conversations"] == 2 and o["resolved_without_handoff"] == 2
        assert sum(o["volume"].values()) == 2 and o["latency_ms"]["n"] == 2 and o["latency_ms"]["p50"] > 0
        assert o["thumbs"] == {"up": 1, "down": 2}
        found = _call(srv.url, agent, "GET", "/v1/agent/ui/conversations", params={"q": "发货"}).json()["data"]
        assert [c["id"] for c in found] == ["c-2"] and found[0]["first"] == "什么时候发货？"

        mark = f"/v1/admin/ui/feedback/{corrected['id']}/training"
        assert _call(srv.url, agent, "POST", mark).status_code == 403  # admins choose training data
        first = _call(srv.url, admin, "POST", mark).json()
        assert _call(srv.url, admin, "POST", mark).json() == first  # twice is still one mark
        assert _call(srv.url, admin, "POST", f"/v1/admin/ui/feedback/{up['id']}/training").json()["source"] == "answer"
        refused = _call(srv.url, admin, "POST", f"/v1/admin/ui/feedback/{down['id']}/training")
        assert refused.status_code == 400 and "nothing to train on" in refused.json()["error"]["message"]
        assert _call(srv.url, admin, "POST", "/v1/admin/ui/feedback/999/training").status_code == 404
        listed = {f["id"]: f["training"] for f in _call(srv.url, admin, "GET", "/v1/admin/ui/feedback").json()["data"]}
        assert listed == {up["id"]: True, down["id"]: False, corrected["id"]: True}
        with srv.svc.store.session() as s:
            rows = {(m.prompt, m.answer, m.source) for m in s.scalars(select(TrainingMark))}
        assert rows == {("什么时候发货？", "您好，付款后24小时内发货。", "correction"),
                        ("运费谁出？", "您好，运费由卖家承担。", "answer")}  # fmt: skip
        actions = [r["action"] for r in _call(srv.url, admin, "GET", "/v1/admin/ui/audit").json()["data"]]
        assert actions.count("feedback.training") == 2
    finally:
        srv.stop()
