"""PgStore against the real PostgreSQL at 127.0.0.1:5432 (db `test`), in a schema unique to this test run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.rag.index import ingest, open_store
from kefu.rag.retrieve import Retriever

URL = "postgresql://postgres@127.0.0.1:5432/test"


def _reachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(URL, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        return f"PostgreSQL at {URL} is unreachable: {e}"
    return None


pytestmark = pytest.mark.skipif(_reachable() is not None, reason=str(_reachable()))


@pytest.fixture
def pg_cfg(kb_cfg: KefuConfig) -> Iterator[KefuConfig]:
    from kefu.rag.pgstore import PgStore

    kb_cfg.kb.db = URL
    kb_cfg.kb.db_schema = f"kefu_kb_test_{uuid.uuid4().hex[:12]}"
    yield kb_cfg
    store = PgStore(URL, kb_cfg.kb.db_schema)
    store.drop()
    store.close()


def test_pg_ingest_search_versions_and_rollback(pg_cfg: KefuConfig) -> None:
    from kefu.rag.pgstore import PgStore

    store = open_store(pg_cfg)
    assert isinstance(store, PgStore)
    assert ingest(pg_cfg, store=store).version == 1
    p = pg_cfg.resolve("kb/returns.md")
    p.write_text(p.read_text(encoding="utf-8").replace("上限 20 元", "上限 30 元"), encoding="utf-8")
    res = ingest(pg_cfg, store=store)
    assert (res.version, res.n_embedded) == (2, 1)  # unchanged chunks reuse vectors stored in PostgreSQL

    r = Retriever(pg_cfg, store=store)
    hit = r.search("质量问题运费补偿上限", k=1)[0]
    assert "30 元" in hit.text and hit.version == 2
    store.activate(1)
    assert "20 元" in r.search("质量问题运费补偿上限", k=1)[0].text
    assert [(v.id, v.active) for v in store.versions()] == [(2, False), (1, True)]
    with pytest.raises(KefuError, match="version 9 does not exist"):
        store.activate(9)
    r.close()


def test_pg_prunes_old_versions(pg_cfg: KefuConfig) -> None:
    pg_cfg.kb.keep_versions = 1
    store = open_store(pg_cfg)
    for _ in range(3):
        ingest(pg_cfg, store=store)
    assert [v.id for v in store.versions()] == [3]
    n = store._rows("SELECT COUNT(DISTINCT version_id) FROM {s}.kb_chunks")  # type: ignore[attr-defined]
    assert n == [(1,)]
    store.close()


def test_unreachable_server_is_a_clear_error(kb_cfg: KefuConfig) -> None:
    kb_cfg.kb.db = "postgresql://postgres@127.0.0.1:1/test"
    with pytest.raises(KefuError, match=r"kb\.db: cannot connect to PostgreSQL"):
        open_store(kb_cfg)
