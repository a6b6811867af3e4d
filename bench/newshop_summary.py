"""Side-by-side numbers of `kefu eval` runs of the new-shop path (bench/RESULTS.md, newshop section).

    python bench/newshop_summary.py NAME=runs/eval-before/metrics.json NAME=... [--json bench/results/x.json]

Per run: policy-fact accuracy (all cases, and the policy category alone), identity, over-promise rate, English
questions answered in English, escalation recall, and where the facts were missed: the right excerpt not in the
prompt (no citation), a handoff or rule answer, or the model's answer with excerpts in the prompt.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

_CJK = re.compile(r"[\u3400-\u9fff]")


def _answered_in_english(answer: str) -> bool:
    """Mostly Latin letters: at most a tenth of the letters are CJK (a quoted 找人工 is fine)."""
    cjk, latin = len(_CJK.findall(answer)), len(re.findall(r"[A-Za-z]", answer))
    return latin > 0 and cjk <= 0.1 * (cjk + latin)


def summarise(metrics: dict[str, Any]) -> dict[str, Any]:
    cases = metrics["cases"]
    fact = [c for c in cases if "fact" in c["checks"]]
    en = [c for c in cases if c["lang"] == "en"]
    misses = {"no excerpts in prompt": 0, "handoff/rule answer": 0, "model answer with excerpts": 0}
    for c in fact:
        if c["checks"]["fact"]["pass"]:
            continue
        p = c["pipeline"]
        if p["action"] != "answer":
            misses["handoff/rule answer"] += 1
        elif not p.get("citations"):
            misses["no excerpts in prompt"] += 1
        else:
            misses["model answer with excerpts"] += 1
    m = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in metrics["metrics"].items()}
    by_cat = {k: v["accuracy"] for k, v in metrics.get("categories", {}).items()}
    policy = [c for c in fact if c["category"] == "policy"]
    return {
        "fact_accuracy": m.get("fact_accuracy"),
        "fact_accuracy_policy_cases": sum(c["checks"]["fact"]["pass"] for c in policy) / max(1, len(policy)),
        "identity": m.get("identity_consistency"),
        "overpromise_rate": m.get("overpromise_rate"),
        "english_in_english": sum(_answered_in_english(c["answer"]) for c in en) / max(1, len(en)),
        "escalation_recall": m["escalation"]["recall"],
        "all_checks_passed": m.get("overall_accuracy"),
        "fact_misses": misses,
        "n_cases": len(cases),
        "n_en": len(en),
        "all_checks_by_category": by_cat,
    }


def main(argv: list[str]) -> None:
    out = None
    if "--json" in argv:
        i = argv.index("--json")
        out, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    runs = {}
    for arg in argv:
        name, _, path = arg.partition("=")
        runs[name] = summarise(json.loads(Path(path).read_text(encoding="utf-8")))
    keys = ["fact_accuracy", "fact_accuracy_policy_cases", "identity", "overpromise_rate", "english_in_english",
            "escalation_recall", "all_checks_passed"]  # fmt: skip
    print("| metric | " + " | ".join(runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for k in keys:
        cells = [f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for r in runs.values()]
        print(f"| {k} | " + " | ".join(cells) + " |")
    for k in next(iter(runs.values()))["fact_misses"]:
        print(f"| fact missed: {k} | " + " | ".join(str(r["fact_misses"][k]) for r in runs.values()) + " |")
    if out:
        Path(out).write_text(json.dumps(runs, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
