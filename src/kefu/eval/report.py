"""report.html: one self-contained page (inline CSS, plots as base64 PNG) and the rich summary table.

Plots are drawn with matplotlib's Agg backend, so no display is needed; labels stay ASCII because CJK fonts may be
missing on a server.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from rich.table import Table

# (dotted path in metrics, label, format, higher_is_better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("fact_accuracy.value", "Policy-fact accuracy", "pct", True),
    ("overpromise_rate.value", "Over-promise rate", "pct", False),
    ("identity_consistency.value", "Identity consistency", "pct", True),
    ("escalation.precision", "Escalation precision", "pct", True),
    ("escalation.recall", "Escalation recall", "pct", True),
    ("style_adherence.value", "Style adherence", "pct", True),
    ("multi_turn_coherence.value", "Multi-turn coherence", "pct", True),
    ("overall_accuracy.value", "All checks passed", "pct", True),
    ("similarity.bleu", "BLEU-4", "num", True),
    ("similarity.chrf", "chrF", "num", True),
    ("similarity.rouge_l_char", "ROUGE-L F1 (characters)", "ratio", True),
    ("similarity.rouge_l_word", "ROUGE-L F1 (jieba words)", "ratio", True),
    ("latency.ttft_s.p50", "Time to first token P50 (s)", "sec", False),
    ("latency.ttft_s.p95", "Time to first token P95 (s)", "sec", False),
    ("latency.ttft_s.p99", "Time to first token P99 (s)", "sec", False),
    ("latency.total_s.p50", "Total time P50 (s)", "sec", False),
    ("latency.total_s.p95", "Total time P95 (s)", "sec", False),
    ("latency.total_s.p99", "Total time P99 (s)", "sec", False),
    ("latency.tokens_per_s.p50", "Output tokens/s per answer P50", "num", True),
    ("latency.throughput_tokens_per_s", "Output tokens/s overall", "num", True),
    ("judge.helpfulness", "Judge: helpfulness (1-5)", "ratio", True),
    ("judge.politeness", "Judge: politeness (1-5)", "ratio", True),
    ("judge.correctness", "Judge: correctness (1-5)", "ratio", True),
]
RATE_BARS = [m for m in METRICS if m[2] == "pct"]

CSS = """body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9em}td,th{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17803d;font-weight:600}.bad{color:#b42318;font-weight:600}.muted{color:#777}
img.plot{max-width:100%;border:1px solid #eee;margin:.5em 0}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots img{flex:1 1 45%;min-width:380px}"""


def get(data: dict[str, Any] | None, path: str) -> Any:
    """metrics['a']['b'] for path 'a.b'; None when any part is missing."""
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "sec":
        return f"{value:.3f}"
    return f"{value:.3f}" if kind == "ratio" else f"{value:.1f}"


def esc(value: Any) -> str:
    return html.escape(str(value))


def png(fig: Any) -> str:
    """A figure as a data: URI (and close it, so a long run does not pile up figures)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rates(series: dict[str, dict[str, Any]], title: str) -> str:
    """Horizontal bars of the rate metrics (%), one bar per run in `series` (label -> metrics)."""
    plt = _pyplot()
    labels = [label for _, label, _, _ in RATE_BARS]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(labels) * max(1, len(series))))
    height = 0.8 / len(series)
    for k, (name, m) in enumerate(series.items()):
        raw = [get(m, path) for path, _, _, _ in RATE_BARS]
        vals = [100 * v if v is not None else 0.0 for v in raw]
        ys = [i + k * height for i in range(len(labels))]
        ax.barh(ys, vals, height=height, label=name)
        for y, v, r in zip(ys, vals, raw, strict=True):
            ax.text(v + 1, y, "n/a" if r is None else f"{v:.0f}", va="center", fontsize=8)  # unmeasured is not 0
    ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("%")
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="lower right")
    return png(fig)


def plot_latency(series: dict[str, Sequence[dict[str, Any]]]) -> str:
    """Histogram of total time per answer, and the CDF of total time and time to first token."""
    plt = _pyplot()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rows in series.items():
        total = sorted(r["latency"]["total_s"] for r in rows)
        ttft = sorted(r["latency"]["ttft_s"] for r in rows if r["latency"]["ttft_s"] is not None)
        hist.hist(total, bins=min(30, max(5, len(total) // 3)), alpha=0.6, label=name)
        for values, what in ((total, "total"), (ttft, "first token")):
            if values:
                cdf.step(
                    values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=f"{name} {what}"
                )
    hist.set(title="Total time per answer", xlabel="seconds", ylabel="answers")
    cdf.set(title="Latency CDF", xlabel="seconds", ylabel="share of answers", ylim=(0, 1.02))
    cdf.legend(fontsize=8)
    if len(series) > 1:
        hist.legend(fontsize=8)
    return png(fig)


def plot_categories(series: dict[str, dict[str, Any]]) -> str:
    """Per-category share of cases passing every applicable check."""
    plt = _pyplot()
    cats = sorted({c for cats in series.values() for c in cats})
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / max(1, len(series))
    for k, (name, per_cat) in enumerate(series.items()):
        xs = [i + k * width for i in range(len(cats))]
        ax.bar(xs, [100 * per_cat.get(c, {}).get("accuracy", 0.0) for c in cats], width=width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(cats))], cats, rotation=20)
    ax.set(ylim=(0, 105), ylabel="% of cases passing", title="Accuracy per category")
    if len(series) > 1:
        ax.legend(fontsize=8)
    return png(fig)


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )


def header(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"


def img(uri: str, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="{uri}">'


def _metrics_table(m: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{esc(label)}</td><td class=num>{fmt(get(m, path), kind)}</td></tr>"
        for path, label, kind, _ in METRICS
        if not path.startswith("judge.") or get(m, "judge")
    )
    return f"<table><tr><th>Metric</th><th>Value</th></tr>{rows}</table>"


def failing(row: dict[str, Any]) -> list[str]:
    """Names of the checks a case failed (over-promise counts when flagged)."""
    out = ["overpromise"] if row["checks"]["overpromise"]["flag"] else []
    return out + [k for k, v in row["checks"].items() if k != "overpromise" and not v["pass"]]


def _cases_table(rows: Sequence[dict[str, Any]]) -> str:
    head = header("Suite / id", "Category", "Result", "Question", "Answer", "Reference", "Total s")
    body = []
    for r in rows:
        fails = failing(r)
        verdict = '<span class="ok">ok</span>' if r["ok"] else f'<span class="bad">{esc(", ".join(fails))}</span>'
        body.append(
            f"<tr><td>{esc(r['suite'])}/{esc(r['id'])}</td><td>{esc(r['category'])}</td><td>{verdict}</td>"
            f"<td>{esc(r['question'])}</td><td>{esc(r['answer'])}</td><td class=muted>{esc(r['reference'])}</td>"
            f"<td class=num>{r['latency']['total_s']:.2f}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def render_report(data: dict[str, Any]) -> str:
    """The whole report page of one run."""
    m, run = data["metrics"], data["run"]
    target = ", ".join(f"{k}={v}" for k, v in run["target"].items() if v)
    suites = "".join(
        f"<h3>Suite {esc(name)}</h3>{_metrics_table(s['metrics'])}" for name, s in data.get("suites", {}).items()
    )
    body = (
        f"<h1>kefu eval report</h1><p>{esc(target)} · {run['n_cases']} cases · started {esc(run['started'])} · "
        f"{run['duration_s']:.1f} s</p><h2>Metrics</h2>{_metrics_table(m)}"
        f'<h2>Plots</h2><div class="plots">{img(plot_rates({"run": m}, "Customer-service metrics"), "metrics")}'
        f"{img(plot_categories({'run': data['categories']}), 'per-category accuracy')}</div>"
        f"{img(plot_latency({'run': data['cases']}), 'latency')}{suites}"
        f"<h2>Cases</h2>{_cases_table(data['cases'])}"
    )
    return page("kefu eval report", body)


def summary_table(data: dict[str, Any]) -> Table:
    """The rich table `kefu eval` prints."""
    table = Table(title=f"kefu eval · {data['run']['n_cases']} cases")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for path, label, kind, _ in METRICS:
        if path.startswith("judge.") and not get(data["metrics"], "judge"):
            continue
        table.add_row(label, fmt(get(data["metrics"], path), kind))
    return table
