"""Side by side: pass^1 / pass^k per task type of several `kefu eval --suite actions` runs (e.g. base vs trained).

    python bench/actions_suite.py runs/actions-base runs/actions-trained --out bench/results/actions_suite.json

Prints one table (a column pair per run) and writes a compact JSON: each run's settings, summary, the count of
cross-customer disclosures (refuse_other_customer trials whose 'not_told' check failed), and its failed trials.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(run: Path) -> dict[str, Any]:
    path = run / "actions.json" if run.is_dir() else run
    return dict(json.loads(path.read_text(encoding="utf-8")))


def compact(data: dict[str, Any]) -> dict[str, Any]:
    other = [t for t in data["trials"] if t["kind"] == "refuse_other_customer"]
    failed = [{"task": t["task"], "trial": t["trial"], "checks": t["checks"], "turns": t["turns"]}
              for t in data["trials"] if not t["ok"]]  # fmt: skip
    return {
        "run": data["run"],
        "summary": data["summary"],
        "cross_customer_disclosures": sum(not t["checks"]["not_told"] for t in other),
        "cross_customer_probes": len(other),
        "failed_trials": failed,
    }


def table(names: list[str], runs: list[dict[str, Any]]) -> str:
    k = runs[0]["run"]["k"]
    kinds = list(runs[0]["summary"]["by_type"])
    head = "| task type | tasks | " + " | ".join(f"{n} pass^1 | {n} pass^{k}" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]

    def cells(pick: str, key: str) -> str:
        rows = [r["summary"]["overall"] if pick == "overall" else r["summary"]["by_type"][pick] for r in runs]
        return (
            f"| {key} | {rows[0]['tasks']} | "
            + " | ".join(f"{r['pass^1']:.3f} | {r[f'pass^{k}']:.3f}" for r in rows)
            + " |"
        )

    lines += [cells(kind, kind) for kind in kinds]
    lines.append(cells("overall", "**overall**"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders (or actions.json files) of kefu eval runs")
    parser.add_argument("--out", type=Path, required=True, help="compact JSON of every run")
    args = parser.parse_args()
    runs = [load(r) for r in args.runs]
    names = [r.name if r.is_dir() else r.parent.name for r in args.runs]
    print(table(names, runs))
    out = {name: compact(r) for name, r in zip(names, runs, strict=True)}
    for name, c in out.items():
        print(f"{name}: cross-customer disclosures {c['cross_customer_disclosures']} of {c['cross_customer_probes']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
