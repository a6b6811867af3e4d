"""How many eval cases the prompt can answer at all: the share whose key facts are all in the excerpts the answer
path shows, for each kb.key_sentences setting, on both sample shops.

A model reading the excerpts can state a fact only if retrieval found it and the sentence cut (kb.key_sentences)
kept it; this measures that ceiling without a model, through the same `KnowledgeBase.lookup` serving calls (the
relevance gate, the cut, the language vote), with each case's earlier user turns as history. It also reports how
long the shown excerpts are (characters; the prefill cost that the cut saves) and whether the facts sit in the
first excerpt alone (what a model that copies excerpt [1] can reach).

Cases: every eval case with key facts except identity ones (their facts are the persona's, not the KB's).

    python bench/kb_ceiling.py [--sentences none,2,3,4,5,6] [--project myshop] [--out bench/results/kb_ceiling.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.answer.knowledge import KnowledgeBase
from kefu.config import load_config
from kefu.eval import numerals
from kefu.eval.runner import load_cases
from kefu.io import write_json
from kefu.rag.index import ingest

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "src" / "kefu" / "samples"
SHOPS = {"shop1": SAMPLES / "shop", "shop2": SAMPLES / "shop2"}


def has_all(text: str, facts: list[str]) -> bool:
    return all(numerals.contains(text, f) for f in facts)


def measure(kb: KnowledgeBase, cases: list[Any]) -> dict[str, Any]:
    """Ceiling rates over `cases` for the KnowledgeBase's config."""
    shown = first = 0
    chars: list[int] = []
    misses: list[str] = []
    for case in cases:
        users = [t.content for t in case.turns if t.role == "user"]
        excerpts = kb.lookup(users[-1], [{"role": "user", "content": u} for u in users[:-1]]).excerpts
        chars.append(sum(len(e) for e in excerpts))
        ok = has_all("\n".join(excerpts), case.key_facts)
        shown += ok
        first += bool(excerpts) and has_all(excerpts[0], case.key_facts)
        if not ok:
            misses.append(case.id)
    n = max(len(cases), 1)
    return {
        "n": len(cases),
        "facts_shown": round(shown / n, 4),
        "facts_in_first_excerpt": round(first / n, 4),
        "excerpt_chars_median": statistics.median(chars) if chars else 0,
        "misses": misses,
    }


def run_shop(project: Path, settings: list[int | None]) -> dict[str, Any]:
    """The ceilings of one project folder (kefu.yaml, its kb sources, eval.cases), ingested into a temp store."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(project / "kefu.yaml", [f"kb.db={tmp}/kb.sqlite"])
        t0 = time.perf_counter()
        ingest(cfg)
        cases = [c for c in load_cases(cfg.resolve(cfg.eval.cases)) if c.key_facts and c.category != "identity"]
        out: dict[str, Any] = {"ingest_s": round(time.perf_counter() - t0, 1)}
        for k in settings:
            cut = f"kb.key_sentences={'null' if k is None else k}"
            kb = KnowledgeBase(load_config(project / "kefu.yaml", [f"kb.db={tmp}/kb.sqlite", cut]))
            out["whole excerpts" if k is None else f"{k} sentences"] = measure(kb, cases)
            kb.retriever.close()
    return out


def table(shop: str, result: dict[str, Any]) -> Table:
    t = Table(title=f"{shop}: eval cases whose key facts the prompt shows (no model)")
    for col in ("excerpts shown", "cases", "all facts shown", "in excerpt [1]", "median chars"):
        t.add_column(col, justify="left" if col == "excerpts shown" else "right")
    for variant, r in result.items():
        if isinstance(r, dict):
            t.add_row(variant, str(r["n"]), f"{r['facts_shown']:.3f}", f"{r['facts_in_first_excerpt']:.3f}",
                      f"{r['excerpt_chars_median']:.0f}")  # fmt: skip
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", default="none,2,3,4,5,6", help="kb.key_sentences values, 'none' = whole excerpts")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kb_ceiling.json")
    ap.add_argument("--project", type=Path, action="append", help="a shop's project folder instead of the samples")
    args = ap.parse_args(argv)
    settings = [None if s == "none" else int(s) for s in args.sentences.split(",")]
    console = Console()
    results = {}
    shops = {p.resolve().name: p for p in args.project} if args.project else SHOPS
    for shop, folder in shops.items():
        results[shop] = run_shop(folder, settings)
        console.print(table(shop, results[shop]))
    write_json(args.out, {"command": "python bench/kb_ceiling.py " + " ".join(argv or sys.argv[1:]), **results})
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
