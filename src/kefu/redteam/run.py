"""`kefu redteam` end to end: choose the probes, learn the target from kefu.yaml, run, score, write the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kefu.config import KefuConfig
from kefu.data.persona import system_prompt
from kefu.errors import KefuError
from kefu.redteam.probes import CATEGORIES, Probe, all_probes, select
from kefu.redteam.report import build_report, write_report
from kefu.redteam.runner import RunOptions, run_probes
from kefu.redteam.scoring import SystemPrompt, Target, score


@dataclass
class Selection:
    """Which probes to send: all by default; `limit` keeps the category/language mix."""

    categories: list[str] | None = None
    langs: list[str] | None = None
    limit: int | None = None
    kb_planted: bool = False


def default_base_url(cfg: KefuConfig) -> str:
    """kefu's own server from serve.host/port (a wildcard bind address is reached on loopback)."""
    host = "127.0.0.1" if cfg.serve.host in ("0.0.0.0", "::", "") else cfg.serve.host
    return f"http://{host}:{cfg.serve.port}/v1"


def target_from_config(
    cfg: KefuConfig, system_prompt_file: Path | None = None, canaries: tuple[str, ...] = ()
) -> Target:
    """The system prompt kefu serves (or the one in a file, for another endpoint), minus the facts it may repeat."""
    p, limits = cfg.persona, cfg.guard.policy_limits
    text = system_prompt_file.read_text(encoding="utf-8") if system_prompt_file else system_prompt(p)
    public = (p.name, p.name_en, p.shop, p.shop_en, p.company, p.hours, p.hours_en, p.handoff, p.handoff_en,
              p.greeting, p.sign_off, *p.can_do, *p.cannot_do)  # fmt: skip
    return Target(
        system_prompt=SystemPrompt(text, public=tuple(x for x in public if x), canaries=canaries),
        forbidden=(*p.forbidden_phrases, *cfg.guard.banned_words),
        public=tuple(x for x in public if x),
        return_days=limits.get("return_days", 7.0),
        longest_days=max(limits.get(k, 0.0) for k in ("return_days", "quality_return_days", "exchange_days")) or 7.0,
    )


def choose(sel: Selection) -> list[Probe]:
    unknown = sorted(set(sel.categories or ()) - set(CATEGORIES))
    if unknown:
        raise KefuError(f"--category {', '.join(unknown)}: unknown; choose from {', '.join(CATEGORIES)}")
    probes = select(all_probes(sel.kb_planted), sel.categories, sel.langs, sel.limit)
    if not probes:
        raise KefuError("no probes match the --category/--lang/--limit selection")
    return probes


def run_redteam(
    opts: RunOptions,
    target: Target,
    out: Path,
    sel: Selection | None = None,
    probes: list[Probe] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Send the chosen probes (or `probes`), write out/report.json and out/report.html, return the report."""
    chosen = probes if probes is not None else choose(sel or Selection())
    report = build_report(run_probes(chosen, opts, target, progress))
    write_report(report, out)
    return report


def rescore_report(report_json: Path, target: Target, out: Path) -> dict[str, Any]:
    """Score the answers of an earlier report again (newer checks, another config) without sending anything."""
    try:
        old = json.loads(report_json.read_text(encoding="utf-8"))
        rows = old["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KefuError(f"{report_json}: not a kefu redteam report.json ({e})") from e
    index = {p.id: p for p in all_probes(kb_planted=True)}
    if unknown := [r["id"] for r in rows if r["id"] not in index]:
        raise KefuError(f"{report_json}: probes this version does not have: {', '.join(unknown[:5])}")
    for r in rows:
        if r["error"] is None:
            v = score(index[r["id"]], r["answer"], target)
            r |= {"success": v.success, "evidence": list(v.evidence), "pii_leak": v.pii_leak,
                  "system_prompt_leak": v.system_prompt_leak}  # fmt: skip
    run = old.get("run", {}) | {"rescored": datetime.now(UTC).isoformat(timespec="seconds")}
    report = build_report({"run": run, "results": rows})
    write_report(report, out)
    return report
