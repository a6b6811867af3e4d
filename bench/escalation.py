"""Escalation quality: precision and recall of `needs_handoff` on a labelled set of customer messages (zh and en).

Each line of the set is {"id", "lang", "text", "escalate": bool, "kind", "batch"?, "history"?: [earlier customer
messages]}. Prints precision/recall/F1 for zh, en, each batch and all, lists every misclassified message, and writes
JSON.

    python bench/escalation.py [--leave-batch-out] [--data src/kefu/guard/handoff_labelled.jsonl] [--out FILE]
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
from kefu.guard.handoff import CLASSIFIER_THRESHOLD, EscalationModel, learned_signal, needs_handoff, train_model
from kefu.io import write_json

HERE = Path(__file__).resolve().parent
LABELLED = HERE.parent / "src" / "kefu" / "guard" / "handoff_labelled.jsonl"


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


def _predict(rows: list[dict[str, Any]], guard: GuardConfig, model: EscalationModel | None) -> None:
    for r in rows:
        decision = needs_handoff(r["text"], guard, history=r.get("history", []), model=model)
        r["predicted"], r["reasons"] = decision.handoff, list(decision.reasons)


def leave_batch_out(rows: list[dict[str, Any]], guard: GuardConfig) -> dict[str, Any]:
    """Predict each batch with the classifier trained on the other batches only (the rules stay as they are).

    Returns the classifier's own scores too (no rules), per batch: the rules were tuned on every batch, so only the
    classifier alone says how the learned part does on messages it has not seen."""
    alone = []
    for batch in sorted({r["batch"] for r in rows}):
        model = train_model((r["text"], r["escalate"]) for r in rows if r["batch"] != batch)
        part = [r for r in rows if r["batch"] == batch]
        _predict(part, guard, model)
        for r in part:
            score = learned_signal(r["text"], model)
            said = score is not None and score >= CLASSIFIER_THRESHOLD
            alone.append({"batch": batch, "escalate": r["escalate"], "predicted": said})
    groups = {f"batch {b}": [a for a in alone if a["batch"] == b] for b in sorted({a["batch"] for a in alone})}
    return {k: scores(v) for k, v in {**groups, "all": alone}.items()}


def run(data: Path, guard: GuardConfig, held_out: bool = False) -> dict[str, Any]:
    rows = load_set(data)
    alone = leave_batch_out(rows, guard) if held_out else None
    if not held_out:
        _predict(rows, guard, None)
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
        "classifier": "trained without the batch it predicts" if held_out else "packaged (trained on all batches)",
        "scores": {k: scores(v) for k, v in groups.items()},
        "misclassified": wrong,
        "classifier_alone": alone,
        "guard": guard.model_dump(include={"handoff_keywords", "handoff_repeats"}),
    }


def report(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"Escalation: needs_handoff on {result['scores']['all']['n']} messages ({result['classifier']})")
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
    if alone := result.get("classifier_alone"):
        for name, s in alone.items():
            console.print(
                f"  classifier alone, held out, {name}: precision {s['precision']:.3f} recall {s['recall']:.3f}"
            )
    for w in result["misclassified"]:
        label = "missed" if w["escalate"] else f"false alarm {w['reasons']}"
        console.print(f"  {w['id']:<8} {label:<40} {w['text']}", markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=LABELLED)
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/escalation[_heldout].json")
    ap.add_argument("--leave-batch-out", action="store_true", help="classifier trained without the batch it scores")
    args = ap.parse_args(argv)
    out = args.out or HERE / "results" / f"escalation{'_heldout' if args.leave_batch_out else ''}.json"
    try:
        result = run(args.data, GuardConfig(), args.leave_batch_out)
    except (KefuError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    report(result, Console())
    write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
