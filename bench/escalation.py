"""Escalation quality: precision and recall of `needs_handoff` on a labelled set of customer messages (zh and en).

Each line of the set is {"id", "lang", "text", "escalate": bool, "kind", "batch", "history"?: [earlier customer
messages]}. Batches were written at different times (bench/RESULTS.md says when and what each measured first).
Prints, side by side for zh, en, each batch and all: kefu's rules (as shipped, tuned on every batch) and a learned
baseline, a naive Bayes over words/word pairs/CJK characters/CJK bigrams that scores each batch trained on the other
batches only. Lists the rules' misclassified messages and writes JSON.

    python bench/escalation.py [--data bench/data/escalation_labelled.jsonl] [--out bench/results/escalation.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kefu.config import GuardConfig
from kefu.errors import KefuError
from kefu.guard.handoff import needs_handoff
from kefu.io import write_json

HERE = Path(__file__).resolve().parent
NB_THRESHOLD = 2.0  # log-odds


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


def scores(labels: list[bool], predicted: list[bool]) -> dict[str, Any]:
    """Precision, recall and F1 of predicted against labels."""
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    fp = sum(p and not y for p, y in zip(predicted, labels, strict=True))
    fn = sum(y and not p for p, y in zip(predicted, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(labels), "positives": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}  # fmt: skip


# ----------------------------------------------------------------------------- the learned baseline
def _features(text: str) -> set[str]:
    low = text.casefold()
    words = re.findall(r"[a-z']+", low)
    runs = re.findall(r"[\u4e00-\u9fff]+", low)
    return {*words, *(f"{a} {b}" for a, b in itertools.pairwise(words)), *"".join(runs)} | {
        r[i : i + 2] for r in runs for i in range(len(r) - 1)
    }


def train_nb(examples: Iterable[tuple[str, bool]]) -> Callable[[str], float]:
    """Bernoulli-style naive Bayes with add-one smoothing: text -> log-odds of escalating."""
    seen: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    n: Counter[bool] = Counter()
    for text, label in examples:
        seen[label].update(_features(text))
        n[label] += 1
    pos, neg = n[True] + 2, n[False] + 2
    vocab = set(seen[True]) | set(seen[False])
    w = {f: math.log((seen[True][f] + 1) / pos) - math.log((seen[False][f] + 1) / neg) for f in vocab}
    prior = math.log(n[True] / n[False])
    return lambda text: prior + sum(w.get(f, 0.0) for f in _features(text))


def nb_held_out(rows: list[dict[str, Any]]) -> list[bool]:
    """Each batch predicted by a model trained on the other batches only."""
    predicted: dict[str, bool] = {}
    for batch in {r["batch"] for r in rows}:
        score = train_nb((r["text"], r["escalate"]) for r in rows if r["batch"] != batch)
        predicted |= {r["id"]: score(r["text"]) >= NB_THRESHOLD for r in rows if r["batch"] == batch}
    return [predicted[r["id"]] for r in rows]


# ----------------------------------------------------------------------------- run and report
def run(data: Path, guard: GuardConfig) -> dict[str, Any]:
    rows = load_set(data)
    decisions = [needs_handoff(r["text"], guard, history=r.get("history", [])) for r in rows]
    systems = {"rules": [d.handoff for d in decisions], "naive_bayes_held_out": nb_held_out(rows)}
    groups: dict[str, list[int]] = {lang: [i for i, r in enumerate(rows) if r["lang"] == lang] for lang in ("zh", "en")}
    for batch in dict.fromkeys(r["batch"] for r in rows):
        groups[f"batch {batch}"] = [i for i, r in enumerate(rows) if r["batch"] == batch]
    groups["all"] = list(range(len(rows)))
    result: dict[str, Any] = {"data": str(data), "n": len(rows)}
    for name, pred in systems.items():
        result[name] = {
            g: scores([rows[i]["escalate"] for i in idx], [pred[i] for i in idx]) for g, idx in groups.items()
        }
    result["misclassified"] = [
        {"id": r["id"], "lang": r["lang"], "text": r["text"], "escalate": r["escalate"], "reasons": list(d.reasons)}
        for r, d in zip(rows, decisions, strict=True)
        if d.handoff != r["escalate"]
    ]
    result["guard"] = guard.model_dump(include={"handoff_keywords", "handoff_repeats"})
    return result


def report(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"Escalation on {result['n']} labelled messages: kefu rules vs naive Bayes (held out per batch)")
    for col in ("set", "n", "escalate", "rules P", "rules R", "NB P", "NB R"):
        t.add_column(col, justify="left" if col == "set" else "right")
    for name, s in result["rules"].items():
        nb = result["naive_bayes_held_out"][name]
        t.add_row(name, str(s["n"]), str(s["positives"]), f"{s['precision']:.3f}", f"{s['recall']:.3f}",
                  f"{nb['precision']:.3f}", f"{nb['recall']:.3f}")  # fmt: skip
    console.print(t)
    for w in result["misclassified"]:
        label = "missed" if w["escalate"] else f"false alarm {w['reasons']}"
        console.print(f"  {w['id']:<12} {label:<40} {w['text']}", markup=False, soft_wrap=True)


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
