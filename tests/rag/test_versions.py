from __future__ import annotations

import time

import pytest

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.rag.index import ingest, open_store, run_rollback, run_versions
from kefu.rag.retrieve import Retriever
from kefu.rag.store import SQLiteStore


def _edit_returns(cfg: KefuConfig, old: str, new: str) -> None:
    p = cfg.resolve("kb/returns.md")
    p.write_text(p.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_ingest_indexes_every_format(ingested: KefuConfig) -> None:
    (v,) = run_versions(ingested)
    assert v.active and v.id == 1
    assert v.sources == [
        "kb/en/shipping.md", "kb/returns.md", "kb/faq.csv", "kb/faq.html", "kb/faq.jsonl", "kb/price.pdf",
    ]  # fmt: skip
    r = Retriever(ingested)
    assert r.search("the price dropped after I paid, can I get the difference back?", k=1)[0].source == "kb/price.pdf"
    assert r.search("How do I delete my account", k=1)[0].source == "kb/faq.jsonl"
    assert r.search("密码错了好几次登不上", k=1)[0].source == "kb/faq.html"
    r.close()


def test_new_version_rollback_and_forward(ingested: KefuConfig) -> None:
    _edit_returns(ingested, "补偿上限 20 元", "补偿上限 30 元")
    res = ingest(ingested, note="raise cap")
    assert res.version == 2 and res.n_reused == res.n_chunks - 1 and res.n_embedded == 1  # only the edit re-embeds
    r = Retriever(ingested)
    assert "30 元" in r.search("质量问题运费补偿上限", k=1)[0].text

    t0 = time.perf_counter()
    assert run_rollback(ingested) == 1
    assert time.perf_counter() - t0 < 1.0
    hit = r.search("质量问题运费补偿上限", k=1)[0]  # the same Retriever sees the switch on its next query
    assert "20 元" in hit.text and hit.version == 1
    assert [(v.id, v.active) for v in run_versions(ingested)] == [(2, False), (1, True)]
    assert run_rollback(ingested, 2) == 2
    assert "30 元" in r.search("质量问题运费补偿上限", k=1)[0].text
    r.close()


def test_rollback_errors_name_the_problem(ingested: KefuConfig) -> None:
    with pytest.raises(KefuError, match="no version older than the active one"):
        run_rollback(ingested)
    with pytest.raises(KefuError, match="version 7 does not exist"):
        run_rollback(ingested, 7)


def test_old_versions_are_pruned_but_never_the_active_one(ingested: KefuConfig) -> None:
    ingested.kb.keep_versions = 2
    for cap in ("21", "22", "23"):
        _edit_returns(ingested, "上限 20 元" if cap == "21" else f"上限 {int(cap) - 1} 元", f"上限 {cap} 元")
        ingest(ingested)
    assert [v.id for v in run_versions(ingested)] == [4, 3]
    store = open_store(ingested)
    assert isinstance(store, SQLiteStore) and store.integrity_check() == "ok"
    n_rows = store._one("SELECT COUNT(DISTINCT version_id) FROM kb_chunks")
    assert n_rows == (2,)
    store.close()


def test_searching_before_any_ingest_says_what_to_do(kb_cfg: KefuConfig) -> None:
    with pytest.raises(KefuError, match="no knowledge base yet; run `kefu kb ingest` first"):
        Retriever(kb_cfg)
    SQLiteStore(kb_cfg.resolve(kb_cfg.kb.db)).close()
    with pytest.raises(KefuError, match="knowledge base is empty"):
        Retriever(kb_cfg).search("退货")


def test_sources_that_match_nothing_are_refused(kb_cfg: KefuConfig) -> None:
    kb_cfg.kb.sources = ["kb/**/*.md", "docs/*.md"]
    with pytest.raises(KefuError, match=r"kb\.sources: 'docs/\*\.md' matches no file"):
        ingest(kb_cfg)
