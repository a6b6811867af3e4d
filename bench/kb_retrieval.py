"""Knowledge-base retrieval eval: BM25 vs dense vs hybrid on the sample shop's documents.

Ingests the sample shop (src/kefu/samples/shop/kefu.yaml) into a temporary store, asks every question of
bench/data/kb_questions.jsonl, prints recall@1, recall@5 and MRR@10 side by side (overall and per language) and
writes them as JSON.

    python bench/kb_retrieval.py [--config kefu.yaml] [--out bench/results/kb_retrieval.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.io import write_json
from kefu.rag.evaluate import MODES, evaluate, load_questions, unmatched_labels
from kefu.rag.index import ingest
from kefu.rag.retrieve import Retriever

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "src" / "kefu" / "samples" / "shop" / "kefu.yaml"


def run(config: Path, questions: Path, overrides: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, [f"kb.db={tmp}/kb.sqlite", *overrides])
        t0 = time.perf_counter()
        info = ingest(cfg)
        ingest_s = time.perf_counter() - t0
        retriever = Retriever(cfg)
        qs = load_questions(questions)
        missing = unmatched_labels(qs, retriever.index().chunks)
        if missing:
            raise KefuError(f"{questions}: labels that match no chunk:\n  " + "\n  ".join(missing))
        result = evaluate(retriever, qs)
        retriever.close()
    result["kb"] = {"chunks": info.n_chunks, "sources": info.n_sources, "ingest_s": round(ingest_s, 2)}
    result["kb_config"] = cfg.kb.model_dump(exclude={"db"})
    return result


def table(result: dict[str, Any]) -> Table:
    t = Table(title=f"KB retrieval: {result['n_questions']} questions, {result['kb']['chunks']} chunks")
    t.add_column("metric")
    for mode in MODES:
        t.add_column(mode, justify="right")
    by_lang = result["modes"]["hybrid"]["by_lang"]
    rows = [("", m) for m in ("recall@1", "recall@5", "mrr")]
    rows += [(lang, m) for lang in by_lang for m in ("recall@1", "recall@5", "mrr")]
    for lang, metric in rows:
        vals = [
            result["modes"][mode]["by_lang"][lang][metric] if lang else result["modes"][mode][metric] for mode in MODES
        ]
        t.add_row(f"{lang} {metric}".strip(), *(f"{v:.3f}" for v in vals))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=SAMPLE, help="kefu.yaml whose kb.sources are evaluated")
    ap.add_argument("--questions", type=Path, default=HERE / "data" / "kb_questions.jsonl")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kb_retrieval.json")
    ap.add_argument("--set", action="append", default=[], help="config override section.key=value")
    args = ap.parse_args(argv)
    try:
        result = run(args.config, args.questions, args.set)
    except KefuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["command"] = " ".join(["python bench/kb_retrieval.py", *(argv if argv is not None else sys.argv[1:])])
    console = Console()
    console.print(table(result))
    rel = result["relevance"]
    console.print(
        f"relevance gate at kb.min_score={rel['min_score']}: on-topic passed {rel['on_topic_passed']:.3f}, "
        f"off-topic rejected {rel['off_topic_rejected']:.3f} ({result['n_off_topic']} off-topic questions)"
    )
    write_json(args.out, result)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
