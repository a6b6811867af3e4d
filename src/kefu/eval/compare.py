"""`kefu eval compare A B`: metric deltas, question-by-question diffs, and the promotion gate.

run_compare(a_dir, b_dir, gate) is what model promotion and the data flywheel call: B (the candidate) may replace
A (the current model) only when `passed`. Rates are compared in points (percent of cases).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kefu.config import GateConfig
from kefu.eval.report import (
    METRICS,
    esc,
    failing,
    fmt,
    get,
    header,
    img,
    page,
    plot_categories,
    plot_latency,
    plot_rates,
)
from kefu.eval.runner import load_run
from kefu.io import write_json, write_text


@dataclass
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass
class CompareResult:
    """The gate's verdict and everything the comparison report shows."""

    passed: bool
    failures: list[str]
    checks: list[GateCheck]
    deltas: list[dict[str, Any]]
    better: list[dict[str, Any]]
    worse: list[dict[str, Any]]
    new_overpromises: list[str]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _points(m: dict[str, Any], path: str) -> float | None:
    v = get(m, path)
    return None if v is None else 100.0 * v


def _drop_check(name: str, a: dict[str, Any], b: dict[str, Any], path: str, allowed: float) -> GateCheck:
    pa, pb = _points(a, path), _points(b, path)
    if pa is None or pb is None:
        return GateCheck(name, True, "not measured in both runs; skipped")
    drop = pa - pb
    return GateCheck(name, drop <= allowed, f"{pa:.1f}% -> {pb:.1f}% (drop {drop:+.1f} points, allowed {allowed:g})")


def _latency_check(a: dict[str, Any], b: dict[str, Any], allowed: float) -> GateCheck:
    la, lb = get(a, "latency.total_s.p99"), get(b, "latency.total_s.p99")
    if not la or lb is None:
        return GateCheck("p99_latency", True, "not measured in both runs; skipped")
    rise = lb / la - 1.0
    detail = f"{la:.3f}s -> {lb:.3f}s ({100 * rise:+.1f}%, allowed +{100 * allowed:.0f}%)"
    return GateCheck("p99_latency", rise <= allowed, detail)


def _keyed(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['suite']}/{r['id']}": r for r in data["cases"]}


def gate_checks(a: dict[str, Any], b: dict[str, Any], new_overpromises: list[str], gate: GateConfig) -> list[GateCheck]:
    """Every gate check on the main suite's metrics (a, b) and the cases B newly over-promises on."""
    ma, mb = a["metrics"], b["metrics"]
    over = GateCheck(
        "new_overpromise",
        gate.allow_new_overpromise or not new_overpromises,
        f"{len(new_overpromises)} new: {', '.join(new_overpromises)}" if new_overpromises else "none",
    )
    return [
        _drop_check("fact_accuracy", ma, mb, "fact_accuracy.value", gate.max_fact_accuracy_drop),
        over,
        _drop_check("identity_consistency", ma, mb, "identity_consistency.value", gate.max_identity_drop),
        _drop_check("escalation_recall", ma, mb, "escalation.recall", gate.max_escalation_recall_drop),
        _latency_check(ma, mb, gate.max_p99_latency_increase),
    ]


def _case_diff(key: str, ra: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    fa, fb = set(failing(ra)), set(failing(rb))
    return {
        "key": key,
        "category": rb["category"],
        "question": rb["question"],
        "answer_a": ra["answer"],
        "answer_b": rb["answer"],
        "fixed": sorted(fa - fb),
        "broken": sorted(fb - fa),
    }


def metric_deltas(ma: dict[str, Any], mb: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, label, kind, higher_better in METRICS:
        va, vb = get(ma, path), get(mb, path)
        if va is None and vb is None:
            continue
        delta = None if va is None or vb is None else vb - va
        improved = None if not delta else (delta > 0) == higher_better
        out.append(
            {"metric": path, "label": label, "kind": kind, "a": va, "b": vb, "delta": delta, "improved": improved}
        )
    return out


def run_compare(a_dir: Path, b_dir: Path, gate: GateConfig, out_dir: Path | None = None) -> CompareResult:
    """Compare run B against run A; write compare.json and compare.html into out_dir when given."""
    a, b = load_run(a_dir), load_run(b_dir)
    ka, kb = _keyed(a), _keyed(b)
    shared = [k for k in kb if k in ka]
    diffs = [_case_diff(k, ka[k], kb[k]) for k in shared]
    new_over = [
        k for k in shared if kb[k]["checks"]["overpromise"]["flag"] and not ka[k]["checks"]["overpromise"]["flag"]
    ]
    checks = gate_checks(a, b, new_over, gate)
    result = CompareResult(
        passed=all(c.passed for c in checks),
        failures=[f"{c.name}: {c.detail}" for c in checks if not c.passed],
        checks=checks,
        deltas=metric_deltas(a["metrics"], b["metrics"]),
        better=[d for d, k in zip(diffs, shared, strict=True) if kb[k]["ok"] and not ka[k]["ok"]],
        worse=[d for d, k in zip(diffs, shared, strict=True) if ka[k]["ok"] and not kb[k]["ok"]],
        new_overpromises=new_over,
        only_in_a=[k for k in ka if k not in kb],
        only_in_b=[k for k in kb if k not in ka],
    )
    if out_dir is not None:
        write_json(out_dir / "compare.json", {"a": str(a_dir), "b": str(b_dir), **result.to_json()})
        write_text(out_dir / "compare.html", render_compare(a, b, result, str(a_dir), str(b_dir)))
    return result


def _deltas_table(result: CompareResult) -> str:
    rows = []
    for d in result.deltas:
        cls = "" if d["improved"] is None else ("ok" if d["improved"] else "bad")
        delta = "n/a" if d["delta"] is None else ("+" if d["delta"] >= 0 else "-") + fmt(abs(d["delta"]), d["kind"])
        rows.append(
            f"<tr><td>{esc(d['label'])}</td><td class=num>{fmt(d['a'], d['kind'])}</td>"
            f"<td class=num>{fmt(d['b'], d['kind'])}</td><td class='num {cls}'>{delta}</td></tr>"
        )
    return f"<table><tr><th>Metric</th><th>A</th><th>B</th><th>B - A</th></tr>{''.join(rows)}</table>"


def _diff_table(diffs: list[dict[str, Any]]) -> str:
    if not diffs:
        return "<p class=muted>none</p>"
    rows = "".join(
        f"<tr><td>{esc(d['key'])}</td><td>{esc(d['category'])}</td><td>{esc(d['question'])}</td>"
        f"<td>{esc(d['answer_a'])}</td><td>{esc(d['answer_b'])}</td>"
        f"<td>{esc(', '.join(d['fixed']) or '-')}</td><td>{esc(', '.join(d['broken']) or '-')}</td></tr>"
        for d in diffs
    )
    head = header("Case", "Category", "Question", "A answer", "B answer", "Fixed", "Broken")
    return f"<table>{head}{rows}</table>"


def render_compare(a: dict[str, Any], b: dict[str, Any], result: CompareResult, name_a: str, name_b: str) -> str:
    """Side-by-side page: gate verdict, metric deltas, plots of both runs, questions that got better or worse."""
    verdict = '<span class="ok">PASSED</span>' if result.passed else '<span class="bad">FAILED</span>'
    gate_rows = "".join(
        f"<tr><td>{esc(c.name)}</td><td class={'ok' if c.passed else 'bad'}>{'pass' if c.passed else 'FAIL'}</td>"
        f"<td>{esc(c.detail)}</td></tr>"
        for c in result.checks
    )
    series = {"A": a["metrics"], "B": b["metrics"]}
    body = (
        f"<h1>kefu eval compare</h1><p>A = {esc(name_a)}<br>B = {esc(name_b)}</p><h2>Gate: {verdict}</h2>"
        f"<table><tr><th>Check</th><th>Result</th><th>Detail</th></tr>{gate_rows}</table>"
        f"<h2>Metrics</h2>{_deltas_table(result)}"
        f'<h2>Plots</h2><div class="plots">{img(plot_rates(series, "A vs B"), "metrics A vs B")}'
        f"{img(plot_categories({'A': a['categories'], 'B': b['categories']}), 'per-category accuracy')}</div>"
        f"{img(plot_latency({'A': a['cases'], 'B': b['cases']}), 'latency A vs B')}"
        f"<h2>Worse in B ({len(result.worse)})</h2>{_diff_table(result.worse)}"
        f"<h2>Better in B ({len(result.better)})</h2>{_diff_table(result.better)}"
    )
    return page("kefu eval compare", body)


def summary_lines(result: CompareResult) -> list[str]:
    """What `kefu eval compare` prints: metric deltas, each gate check, and the questions that changed."""
    lines = []
    for d in result.deltas:
        delta = "" if d["delta"] is None else f" ({'+' if d['delta'] >= 0 else '-'}{fmt(abs(d['delta']), d['kind'])})"
        lines.append(f"{d['label']}: {fmt(d['a'], d['kind'])} -> {fmt(d['b'], d['kind'])}{delta}")
    for c in result.checks:
        mark = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        lines.append(f"gate {c.name}: {mark} {c.detail}")
    lines.append(f"better in B: {', '.join(d['key'] for d in result.better) or 'none'}")
    lines.append(f"worse in B: {', '.join(d['key'] for d in result.worse) or 'none'}")
    return lines
