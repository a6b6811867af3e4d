"""Query rewriting: English and colloquial words bring the documents' terms; a clock time brings cut-off words
(or, asked of people, the service hours')."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.rag.glossary import BUILTIN, Glossary
from kefu.rag.index import glossary_for
from kefu.rag.retrieve import Retriever

SHOP2 = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop2"


def test_colloquial_english_and_chinese_terms_expand() -> None:
    g = Glossary.load(BUILTIN)
    assert "破损" in g.expand("杯子到手就碎了") and "damaged" in g.expand("杯子到手就碎了")
    assert "运费" in g.expand("退回去邮费谁掏")
    assert "发票" in g.expand("I need a receipt for my company")
    assert g.expand("发票怎么开").endswith("invoice")  # a document term brings only its English twin
    assert g.expand("hello there") == "hello there"


def test_english_synonyms_are_for_bm25_only() -> None:
    g = Glossary.load(BUILTIN)
    q = "How long do I have to send something back?"
    assert "returned" in g.expand(q) and "退货" in g.expand(q)  # BM25 finds "Items can be returned..."
    assert "returned" not in g.expand(q, synonyms=False) and "退货" in g.expand(q, synonyms=False)


def test_a_clock_time_asks_about_a_cut_off() -> None:
    g = Glossary.load(BUILTIN)
    for q in ("我下午三点付的款今天能发吗", "paid at 4pm, ships today?", "15:20 下的单"):
        assert "当天" in g.expand(q) and "之前" in g.expand(q), q
    assert "当天" not in g.expand("三点水是什么")
    assert "当天" not in Glossary(g.rows, clock_times=False).expand("下午三点付的款")
    # asked of people, a time is about the service hours, not the shipping cut-off
    for q in ("晚上九点还有人工吗", "is there an agent at 9pm?"):
        assert "服务时间" in g.expand(q) and "当天" not in g.expand(q), q
    for q in ("下午三点在线支付的订单今天能发吗", "I paid at 4pm, can someone ship it today?"):
        assert "当天" in g.expand(q) and "服务时间" not in g.expand(q), q


def test_a_shops_glossary_adds_to_the_builtin_one() -> None:
    cfg = load_config(SHOP2 / "kefu.yaml")
    g = glossary_for(cfg)
    assert g is not None
    assert "帐杆" in g.expand("tent pole came snapped") and "破损" in g.expand("tent pole came snapped")
    assert glossary_for(load_config(SHOP2 / "kefu.yaml", ["kb.glossary=null"])) is None


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("en,zh,colloquial\nrefund,退款,\ntent,,\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"g\.csv:3: a glossary row needs 'zh'"):
        Glossary.load(path)
    path.write_text("en,zh,colloquial\n,退款,退钱\n", encoding="utf-8")
    assert "退款" in Glossary.load(path).expand("退钱要多久")


def test_dense_search_embeds_the_rewritten_query(tmp_path: Path) -> None:
    cfg = load_config(SHOP2 / "kefu.yaml", [f"kb.db={tmp_path}/kb.sqlite", "kb.sources=[kb/damaged.md]"])
    from kefu.rag.index import ingest

    ingest(cfg)
    on, off = Retriever(cfg), Retriever(load_config(SHOP2 / "kefu.yaml", [f"kb.db={tmp_path}/kb.sqlite",
                                                                         "kb.rewrite_dense=false"]))  # fmt: skip
    try:
        q = "帐篷杆到手就碎了"
        rewritten, plain = on.search(q, 1, "dense")[0], off.search(q, 1, "dense")[0]
        assert q in next(iter(on._qcache)) and next(iter(on._qcache)) != q
        assert list(off._qcache) == [q]
        assert (rewritten.dense_score or 0) > (plain.dense_score or 0)
    finally:
        on.close()
        off.close()
