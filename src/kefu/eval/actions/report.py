"""The actions suite's report: actions.json (everything) and actions.html (pass^1 / pass^k per task type, failures)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from kefu.io import write_json, write_text


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary_rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(task type, tasks, pass^1, pass^k) rows, overall last."""
    k = data["run"]["k"]
    summary = data["summary"]
    rows = [
        (kind, str(r["tasks"]), _pct(r["pass^1"]), _pct(r.get(f"pass^{k}"))) for kind, r in summary["by_type"].items()
    ]
    rows += [(f"lang {lang}", str(r["tasks"]), _pct(r["pass^1"]), _pct(r.get(f"pass^{k}")))
             for lang, r in summary["by_lang"].items()]  # fmt: skip
    o = summary["overall"]
    return [*rows, ("overall", str(o["tasks"]), _pct(o["pass^1"]), _pct(o.get(f"pass^{k}")))]


def _failures(data: dict[str, Any], limit: int = 40) -> str:
    items = []
    for t in [t for t in data["trials"] if not t["ok"]][:limit]:
        failed = ", ".join(name for name, ok in t["checks"].items() if not ok)
        said = "<br>".join(f"<b>{html.escape(m['role'])}</b>: {html.escape(m['content'])}" for m in t["turns"])
        items.append(f"<tr><td>{html.escape(t['task'])}</td><td>{t['trial']}</td><td>{failed}</td><td>{said}</td></tr>")
    return "".join(items) or "<tr><td colspan=4>none</td></tr>"


def render_html(data: dict[str, Any]) -> str:
    k, run = data["run"]["k"], data["run"]
    head = "".join(f"<th>{h}</th>" for h in ("task type", "tasks", "pass^1", f"pass^{k}"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in summary_rows(data))
    return f"""<!doctype html><meta charset="utf-8"><title>kefu actions eval</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
table{{border-collapse:collapse;margin-bottom:2em}}</style>
<h1>Shop actions (τ-bench style)</h1>
<p>{run["tasks"]} tasks × {run["trials"]} trials, customer {html.escape(run["customer"])}, target
{html.escape(str(run["target"]))}, started {run["started"]}, {run["duration_s"]:.0f} s. pass^k: all k trials of a task
succeed, estimated as C(c,k)/C(n,k) from n trials with c successes, averaged over tasks.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Failed trials</h2><table><tr><th>task</th><th>trial</th><th>failed checks</th><th>conversation</th></tr>
{_failures(data)}</table>
"""


def write_report(data: dict[str, Any], out_dir: Path) -> list[Path]:
    files = [out_dir / "actions.json", out_dir / "actions.html"]
    write_json(files[0], data)
    write_text(files[1], render_html(data))
    return files
