"""Escalation quality: precision and recall of `needs_handoff` on a labelled set of customer messages (zh and en).

Each line of the set is {"id", "lang", "text", "escalate": bool, "kind", "batch"?, "history"?: [earlier customer
messages]}. Prints precision/recall/F1 for zh, en, each batch and all, lists every misclassified message, and writes
JSON.

    python bench/escalation.py [--data bench/data/escalation_labelled.jsonl] [--out bench/results/escalation.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.config import GuardConfig
from kefu.errors import KefuError
from kefu.guard.handoff import needs_handoff
from kefu.io import write_json

HERE = Path(__file__).resolve().parent


def load_set(path: Path) -> list[dict[str, Any]]:
    """The labelled messages; a malformed line is reported with its line number."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row["text"], str) or not isinstance(row["escalate"], bool):
                raise ValueError("text must be a string and escalate a boolean")
        except (ValueError, KeyError) as e:
            raise KefuError(f"{path}:{n}: {e}") from e
        rows.append(row)
    return rows


def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Precision, recall and F1 of the `predicted` flag against the `escalate` label."""
    tp = sum(r["predicted"] and r["escalate"] for r in rows)
    fp = sum(r["predicted"] and not r["escalate"] for r in rows)
    fn = sum(not r["predicted"] and r["escalate"] for r in rows)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(rows),
        "positives": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def run(data: Path, guard: GuardConfig) -> dict[str, Any]:
    rows = load_set(data)
    for r in rows:
        decision = needs_handoff(r["text"], guard, history=r.get("history", []))
        r["predicted"], r["reasons"] = decision.handoff, list(decision.reasons)
    groups = {lang: [r for r in rows if r["lang"] == lang] for lang in ("zh", "en")}
    # Batches were written at different times (see bench/RESULTS.md): each one's score is reported on its own too.
    for batch in dict.fromkeys(r.get("batch", "") for r in rows if r.get("batch")):
        groups[f"batch {batch}"] = [r for r in rows if r.get("batch") == batch]
    groups["all"] = rows
    wrong = [
        {k: r[k] for k in ("id", "lang", "kind", "text", "escalate", "reasons")}
        for r in rows
        if r["predicted"] != r["escalate"]
    ]
    return {
        "data": str(data),
        "scores": {k: scores(v) for k, v in groups.items()},
        "misclassified": wrong,
        "guard": guard.model_dump(include={"handoff_keywords", "handoff_repeats"}),
    }


def report(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"Escalation: needs_handoff on {result['scores']['all']['n']} labelled messages")
    for col in ("set", "n", "should escalate", "precision", "recall", "F1", "false +", "false -"):
        t.add_column(col, justify="left" if col == "set" else "right")
    for name, s in result["scores"].items():
        t.add_row(
            name,
            str(s["n"]),
            str(s["positives"]),
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            str(s["fp"]),
            str(s["fn"]),
        )
    console.print(t)
    for w in result["misclassified"]:
        label = "missed" if w["escalate"] else f"false alarm {w['reasons']}"
        console.print(f"  {w['id']:<8} {label:<40} {w['text']}", markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / "data" / "escalation_labelled.jsonl")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "escalation.json")
    args = ap.parse_args(argv)
    try:
        result = run(args.data, GuardConfig())
    except (KefuError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report(result, Console())
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
