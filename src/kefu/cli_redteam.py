"""`kefu redteam`: attack an OpenAI-compatible endpoint (kefu's own server by default) and write a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console

_HELP_KB = (
    "Also send the questions that retrieve the planted document: first add it to the KB "
    "(`kefu redteam --print-planted-doc > kb/zz_planted.md`, `kefu kb ingest`), against a test copy only."
)


def redteam(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")] = Path("redteam"),
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL; default kefu's serve.host/port.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="KEFU_API_KEY", help="API key (or $KEFU_API_KEY).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name to send; default serve.model_name.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Probes in flight at once.")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Send this many probes, keeping the category mix.")] = None,
    category: Annotated[list[str] | None, typer.Option(help="Only these categories (repeatable).")] = None,
    lang: Annotated[list[str] | None, typer.Option(help="Only these languages: zh, en (repeatable).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Answer length cap per probe.")] = 160,
    stream: Annotated[bool, typer.Option(help="Ask for streamed answers.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per request before the client gives up.")] = 180.0,
    system_prompt_file: Annotated[
        Path | None, typer.Option(help="The endpoint's system prompt, when it is not kefu's own (leak detection).")
    ] = None,
    canary: Annotated[list[str] | None, typer.Option(help="A secret string in the system prompt (repeatable).")] = None,
    kb_planted: Annotated[bool, typer.Option(help=_HELP_KB)] = False,
    print_planted_doc: Annotated[
        bool, typer.Option(help="Print the document to plant in a test KB, then exit.")
    ] = False,
    rescore: Annotated[
        Path | None, typer.Option(help="Score an earlier report.json's answers again (sends nothing) into --out.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Send >= 500 zh/en attack probes and report attack success rate by category and language, with examples."""
    from kefu.redteam.probes import planted_doc_text
    from kefu.redteam.run import Selection, default_base_url, rescore_report, run_redteam, target_from_config
    from kefu.redteam.runner import RunOptions

    if print_planted_doc:
        typer.echo(planted_doc_text())
        return
    cfg = cfg_from(config, set_)
    target = target_from_config(cfg, system_prompt_file, tuple(canary or ()))
    if rescore is not None:
        _summary(rescore_report(rescore, target, out), out)
        return
    opts = RunOptions(base_url or default_base_url(cfg), api_key or "none", model or cfg.serve.model_name,
                      concurrency, max_tokens, stream, timeout)  # fmt: skip
    _summary(run_redteam(opts, target, out, Selection(category, lang, limit, kb_planted)), out)


def _summary(rep: dict[str, Any], out: Path) -> None:
    s = rep["summary"]
    asr = "n/a" if s["asr"] is None else f"{100 * s['asr']:.1f}%"
    console.print(f"ASR {asr} ({s['successes']}/{s['answered']} answered, {s['errors']} errors), "
                  f"PII leaks {s['pii_leaks']}, system-prompt leaks {s['system_prompt_leaks']}")  # fmt: skip
    for cat, r in rep["by_category"].items():
        console.print(f"  {cat:<16} {r['successes']:>3}/{r['answered']:<3}")
    console.print(f"[green]Report: {out / 'report.html'}[/]")
