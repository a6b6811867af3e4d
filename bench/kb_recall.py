"""Retrieval recall@5 on questions customers actually type, for both sample shops, and the relevance gate.

The questions (bench/data/kb_recall_shop{1,2}.jsonl) were written away from the documents' wording: colloquial
("杯子到手就碎了" for 商品破损), with typos ("退宽多久到帐"), indirect (a clock time against a 14:30 cut-off),
two facts at once, and English questions about Chinese-only documents; each has a `kind`. Ten off-topic
questions per shop (no labels) measure what the relevance gate lets through.

Each shop is ingested once into a temporary store; every variant (a list of config overrides) is evaluated on the
same index in the same run, so the table shows what moved the number. Shop 1 is evaluated on its Markdown
documents (its FAQ files repeat them, and the labels name Markdown sections); bench/kb_retrieval.py covers the full
corpus. The gate sweep reports, per (min_score, min_score_lexical), the share of on-topic questions whose top-k
passes the gate with a right hit in it (recall through the gate) and the share of off-topic ones rejected; the
JSON lists the on-topic questions the default gate loses (gate_misses), so a change's gains and losses show.

    python bench/kb_recall.py [--out bench/results/kb_recall.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.config import KefuConfig, load_config
from kefu.io import write_json
from kefu.rag.evaluate import Question, first_match, load_questions, unmatched_labels
from kefu.rag.glossary import BUILTIN, Glossary
from kefu.rag.index import ingest
from kefu.rag.retrieve import Hit, Retriever, relevant

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "src" / "kefu" / "samples"
SHOPS = {
    "shop1": (SAMPLES / "shop" / "kefu.yaml", ["kb.sources=[kb/**/*.md]"]),
    "shop2": (SAMPLES / "shop2" / "kefu.yaml", []),
}
# The glossaries each variant rewrites queries with; all run on one ingested index per shop.
# glossary_before.csv is the built-in glossary before colloquial synonyms and clock-time rewriting were added.
VARIANTS: dict[str, list[Path] | None] = {
    "no glossary": None,
    "en-zh glossary (before)": [HERE / "data" / "glossary_before.csv"],
    "+ colloquial, clock times": [BUILTIN],
    "+ shop glossary": [BUILTIN, Path("<shop>")],
    "+ dense query rewritten": [BUILTIN, Path("<shop>")],  # kb.rewrite_dense (the default now); others run without
}
K = 5
SWEEP_DENSE = (0.82, 0.84, 0.85, 0.86, 0.87, 0.88)
SWEEP_LEXICAL = (0.74, 0.76, 0.78, 0.80, 0.82)


def kinds(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r.get("kind", "") for r in rows}


def _rates(ranks: list[int | None], keys: list[str]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[int | None]] = defaultdict(list)
    for r, key in zip(ranks, keys, strict=True):
        groups[key].append(r)
        groups["all"].append(r)
    return {
        g: {"n": len(v), f"recall@{K}": round(sum(r is not None for r in v) / len(v), 4)} for g, v in groups.items()
    }


def gate_sweep(on: list[tuple[Question, list[Hit]]], off: list[list[Hit]]) -> list[dict[str, float]]:
    """Recall through the gate (a right hit in the top k and the gate open) and off-topic rejection per threshold."""
    out = []
    for dense in SWEEP_DENSE:
        for lexical in SWEEP_LEXICAL:
            if lexical > dense:
                continue
            through = sum(relevant(h, dense, lexical) and first_match(h, q.labels) is not None for q, h in on)
            rejected = sum(not relevant(h, dense, lexical) for h in off)
            out.append({"min_score": dense, "min_score_lexical": lexical,
                        "recall_through_gate": round(through / max(len(on), 1), 4),
                        "off_topic_rejected": round(rejected / max(len(off), 1), 4)})  # fmt: skip
    return out


def _glossary(files: list[Path] | None, cfg: KefuConfig) -> Glossary | None:
    if files is None:
        return None
    own = cfg.resolve(cfg.kb.glossary) if cfg.kb.glossary not in (None, "builtin") else None
    glossary = Glossary.load(*(own if f == Path("<shop>") else f for f in files if own or f != Path("<shop>")))
    glossary.clock_times = BUILTIN in files  # the glossary before had no clock-time rule
    return glossary


def run_variant(
    retriever: Retriever, cfg: KefuConfig, questions: list[Question], kind: dict[str, str]
) -> dict[str, Any]:
    on = [q for q in questions if q.labels]
    off = [q for q in questions if not q.labels]
    on_hits = [(q, retriever.search(q.question, K)) for q in on]
    off_hits = [retriever.search(q.question, K) for q in off]
    ranks = [first_match(h, q.labels) for q, h in on_hits]
    langs = _rates(ranks, [q.lang for q in on])
    by_kind = _rates(ranks, [kind[q.id] for q in on])
    through = [relevant(h, cfg.kb.min_score, cfg.kb.min_score_lexical) and r is not None
               for (q, h), r in zip(on_hits, ranks, strict=True)]  # fmt: skip
    at_default = sum(through)
    return {
        "recall": {**by_kind, **{f"lang:{k}": v for k, v in langs.items() if k != "all"}},
        "misses": [q.question for q, r in zip(on, ranks, strict=True) if r is None],
        "gate_misses": [q.question for q, ok in zip(on, through, strict=True) if not ok],
        "gate_default": {"min_score": cfg.kb.min_score, "min_score_lexical": cfg.kb.min_score_lexical,
                         "recall_through_gate": round(at_default / max(len(on), 1), 4),
                         "off_topic_rejected": round(sum(not relevant(h, cfg.kb.min_score, cfg.kb.min_score_lexical)
                                                         for h in off_hits) / max(len(off), 1), 4)},
        "gate_sweep": gate_sweep(on_hits, off_hits),
    }  # fmt: skip


def run_shop(name: str, extra: list[str]) -> dict[str, Any]:
    config, overrides = SHOPS[name]
    qpath = HERE / "data" / f"kb_recall_{name}.jsonl"
    questions, kind = load_questions(qpath), kinds(qpath)
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"kb.db={tmp}/kb.sqlite", *overrides, *extra]
        cfg = load_config(config, base)
        t0 = time.perf_counter()
        info = ingest(cfg)
        retriever = Retriever(cfg)
        missing = unmatched_labels(questions, retriever.index().chunks)
        if missing:
            raise SystemExit(f"{qpath}: labels that match no chunk:\n  " + "\n  ".join(missing))
        result: dict[str, Any] = {"chunks": info.n_chunks, "ingest_s": round(time.perf_counter() - t0, 1)}
        for variant, files in VARIANTS.items():
            retriever.index().lexical.glossary = _glossary(files, cfg)
            retriever.kb = cfg.kb.model_copy(update={"rewrite_dense": variant == "+ dense query rewritten"})
            result[variant] = run_variant(retriever, cfg, questions, kind)
        retriever.close()
    return result


def table(shop: str, result: dict[str, Any]) -> Table:
    t = Table(title=f"{shop}: recall@{K} ({result['chunks']} chunks)")
    t.add_column("questions")
    for variant in VARIANTS:
        t.add_column(variant, justify="right")
    first = result[next(iter(VARIANTS))]["recall"]
    for group in sorted(first, key=lambda g: (g != "all", g)):
        cells = [f"{result[v]['recall'][group][f'recall@{K}']:.3f}" for v in VARIANTS]
        t.add_row(f"{group} ({first[group]['n']})", *cells)
    gates = [result[v]["gate_default"] for v in VARIANTS]
    t.add_row("through default gate", *(f"{g['recall_through_gate']:.3f}" for g in gates))
    t.add_row("off-topic rejected", *(f"{g['off_topic_rejected']:.3f}" for g in gates))
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kb_recall.json")
    ap.add_argument("--set", action="append", default=[], help="config override for every run, section.key=value")
    args = ap.parse_args(argv)
    console = Console(width=160)
    results: dict[str, Any] = {}
    for shop in SHOPS:
        results[shop] = run_shop(shop, args.set)
        console.print(table(shop, results[shop]))
    results["command"] = " ".join(["python bench/kb_recall.py", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.out, results)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
