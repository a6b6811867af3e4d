"""Storage on SQLite (WAL) and PostgreSQL: migrations, masked messages, feedback, tickets, versions, audit chain."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from sqlalchemy import inspect, select, text
from tests.serve.conftest import make_cfg, start

from kefu.answer.engines.scripted import ScriptedEngine
from kefu.serve import audit, handoff, keys, sessions, versions
from kefu.serve.app import create_app
from kefu.serve.db import Store
from kefu.serve.pipeline import hash_user_id
from kefu.serve.tables import Conversation, Feedback, Message

TABLES = {
    "kefu_api_keys", "kefu_conversations", "kefu_messages", "kefu_feedback", "kefu_tickets",
    "kefu_model_versions", "kefu_audit", "kefu_state", "alembic_version",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


def test_migrations_are_idempotent(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url, tmp_path)
    Store(db_url, tmp_path)  # a second start migrates nothing and breaks nothing
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        if store.dialect == "sqlite":
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_relative_sqlite_path_is_relative_to_config(tmp_path: Path) -> None:
    store = Store("sqlite:///sub/k.sqlite", tmp_path)
    assert (tmp_path / "sub" / "k.sqlite").is_file() and store.dialect == "sqlite"


def test_end_to_end_storage(db_url: str, tmp_path: Path) -> None:
    engine = ScriptedEngine()
    srv = start(create_app(make_cfg(tmp_path, f"serve.db_url={db_url}"), engine))
    try:
        client = openai.OpenAI(base_url=srv.base, api_key=srv.key(), max_retries=0)
        engine.queue("您好，已收到。", "您好，订单在路上。")
        ext = {"kefu": {"conversation_id": "c-1", "user_id": "u-9"}}
        client.chat.completions.create(
            model="kefu", messages=[{"role": "user", "content": "我的手机号13812345678，订单到哪了"}], extra_body=ext
        )
        client.chat.completions.create(model="kefu", messages=[{"role": "user", "content": "还要多久"}], extra_body=ext)
        # the engine never sees the customer's phone number, not even in the turn that carried it
        first = engine.calls[0].messages
        assert "13812345678" not in str(first) and "[PHONE]" in first[-1]["content"]
        # the second turn's prompt carries the stored (masked) history, not what the client re-sent
        sent = engine.calls[-1].messages
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert "13812345678" not in sent[1]["content"] and "[PHONE]" in sent[1]["content"]
        r = srv.svc
        with r.store.session() as s:
            stored = [m.content for m in s.scalars(select(Message).order_by(Message.id))]
        assert stored == ["我的手机号[PHONE]，订单到哪了", "您好，已收到。", "还要多久", "您好，订单在路上。"]
        with r.store.session() as s:
            user_id = s.scalars(select(Conversation.user_id)).one()
        salt = r.pipeline._salt  # kept in the store's state table (no KEFU_USER_ID_SALT here)
        assert user_id == hash_user_id("u-9", salt) and user_id.startswith("u_") and "u-9" not in user_id
        assert r.store.get_state("user_id_salt") == salt.decode()
        import httpx

        fb = httpx.post(f"{srv.base}/feedback", headers={"Authorization": f"Bearer {srv.key()}"},
                        json={"conversation_id": "c-1", "rating": "down", "text": "打13900001111找我"})  # fmt: skip
        assert fb.status_code == 404  # another client's conversation is not yours
        own = client.post(
            "/feedback", cast_to=object, body={"conversation_id": "c-1", "rating": "up", "text": "打13900001111找我"}
        )
        assert own["status"] == "recorded"  # type: ignore[index]
        with r.store.session() as s:
            row = s.scalars(select(Feedback)).one()
        assert row.rating == "up" and row.text == "打[PHONE]找我"
        r.audit.flush()
        assert audit.verify(r.store).ok
    finally:
        srv.stop()


def test_tickets_versions_and_keys_in_store(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url, tmp_path)
    sessions.ensure(store, "c-2", None, None)
    tid = handoff.escalate(store, "c-2", "user", "[user] 我要投诉", actor="test")
    assert handoff.escalate(store, "c-2", "user", "again", actor="test") == tid  # one open ticket per conversation
    handoff.claim(store, tid, "agent1")
    handoff.reply(store, tid, "agent1", "您好，我是人工客服。")
    assert handoff.release(store, tid, "agent1")["status"] == "closed"
    versions.ensure_base(store)
    adapter = tmp_path / "ad"
    adapter.mkdir()
    versions.register(store, "v2", "adapter", str(adapter))
    versions.promote(store, "v2")
    assert [(v.name, v.status) for v in versions.list_versions(store)] == [("base", "retired"), ("v2", "active")]
    secret = keys.create(store, "agent", "ops")
    assert keys.KeyChecker(store).check(secret) is not None
    assert secret.split("_", 2)[2] not in str(keys.list_keys(store))  # only the hash is stored
    v = audit.verify(store)
    assert v.ok and v.rows == 8  # escalate, claim, reply, release, 2 registers, promote, key


def test_concurrent_audit_writers_chain_correctly(db_url: str, tmp_path: Path) -> None:
    """Writers on separate connections (as separate processes would be) interleave into one valid chain."""
    import threading

    Store(db_url, tmp_path)  # migrate once
    errors: list[BaseException] = []

    def write(who: int) -> None:
        store = Store(db_url, tmp_path, auto_migrate=False)
        try:
            for i in range(25):
                audit.record(store, f"w{who}", "tick", {"i": i})
        except BaseException as e:
            errors.append(e)
        finally:
            store.dispose()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    v = audit.verify(Store(db_url, tmp_path))
    assert v.ok and v.rows == 100


def test_a_batch_of_exchanges_is_stored_with_each_answers_id(db_url: str, tmp_path: Path) -> None:
    """The writer stores many answers in one transaction: new and known conversations, silent turns, two turns of
    one conversation; each answer's id points at that answer, and each audit row names it."""
    store = Store(db_url, tmp_path)
    sessions.ensure(store, "known", "k0", "u0")
    batch = [
        sessions.Exchange("new-1", ["q1"], "a1", "v1", "k1", "u1"),
        sessions.Exchange("known", ["q2", "q2b"], "a2", "v2", "k0", "u0"),
        sessions.Exchange("new-2", ["q3"], None, "v1", "k1", None),  # a human has it: the bot stays silent
        sessions.Exchange("new-1", ["q4"], "a4", None, "k1", "u1"),
    ]
    writer = audit.AuditWriter(store)
    seen: list[int | None] = []

    def job(ex: sessions.Exchange) -> audit.AnswerJob:
        def events(message_id: int | None) -> list[audit.Event]:
            seen.append(message_id)
            return [audit.Event("test", "answer", {"message_id": message_id})]

        return audit.AnswerJob(ex, events)

    writer._write([(job(ex), None) for ex in batch])
    writer.close()
    with store.session() as s:
        content = {m.id: (m.conversation_id, m.role, m.content) for m in s.scalars(select(Message))}
        convs = {c.id: (c.key_id, c.model_version) for c in s.scalars(select(Conversation))}
    assert [content[i] if i else None for i in seen] == [
        ("new-1", "assistant", "a1"), ("known", "assistant", "a2"), None, ("new-1", "assistant", "a4")
    ]  # fmt: skip
    assert sorted(c for _, _, c in content.values()) == ["a1", "a2", "a4", "q1", "q2", "q2b", "q3", "q4"]
    assert convs == {"known": ("k0", "v2"), "new-1": ("k1", "v1"), "new-2": ("k1", "v1")}
    assert sessions.history(store, "new-1") == [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q4"}, {"role": "assistant", "content": "a4"},
    ]  # fmt: skip
    v = audit.verify(store)
    assert v.ok and v.rows == 4
