"""`kefu data from-logs` and `kefu cycle`: the flywheel (served conversations -> data -> training -> eval ->
gate -> canary), registered by kefu.cli and kefu.cli_data."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console


def data_from_logs(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    since: Annotated[str | None, typer.Option(help="Only conversations active since this date (2026-11-01).")] = None,
) -> None:
    """Served conversations -> SFT/DPO training data and a review queue (flywheel.export_dir)."""
    from kefu.flywheel.export import run_from_logs
    from kefu.serve.ops import open_store

    cfg = cfg_from(config, set_)
    r = run_from_logs(cfg, open_store(cfg), parse_since(since))
    console.print(f"[green]{r.conversations} conversations[/] -> new {r.new}, total {r.total}, "
                  f"{r.duplicates} duplicates skipped; wrote {r.out_dir}", soft_wrap=True)  # fmt: skip
    for name, kinds in r.by_kind.items():
        console.print(f"  new in {name}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()), soft_wrap=True)


def parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        at = datetime.fromisoformat(since)
    except ValueError:
        raise typer.BadParameter(f"{since!r}: expected a date like 2026-11-01", param_hint="--since") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def cycle(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    since: Annotated[str | None, typer.Option(help="Export conversations active since this date.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps and stop.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Cycle folder to resume; default the newest unfinished.")] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Stop after this step (export, prepare, sft, dpo, eval_live, eval_new, gate); "
            "the next `kefu cycle` resumes after it."
        ),
    ] = None,
) -> None:
    """Logs -> data -> incremental training -> eval -> gate -> canary (see flywheel.*)."""
    from kefu.flywheel.cycle import GateRefused, describe_plan, run_cycle
    from kefu.serve.ops import open_store

    cfg = cfg_from(config, set_)
    store = open_store(cfg)
    if dry_run:
        for line in describe_plan(cfg, store):
            print(line)
        return
    try:
        # soft_wrap: a step's result stays one line in a log (rich wraps at 80 columns when not on a terminal)
        say = lambda m: console.print(m, soft_wrap=True)  # noqa: E731
        c = run_cycle(cfg, store, parse_since(since), resume, say=say, until=until)
    except GateRefused as e:
        console.print(f"[red]gate refused[/]: {e}")
        raise typer.Exit(2) from None
    if not c.state["finished"]:
        return
    canary = c.state["steps"]["canary"]
    console.print(
        f"[green]cycle done[/]: {canary['version']} is on canary at {canary['percent']}% of traffic "
        f"({c.run_dir}); watch it with `kefu models watch`, `kefu models promote` when it holds up"
    )
