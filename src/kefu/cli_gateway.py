"""`kefu serve` and the commands that administer the gateway's store: migrations, API keys, model versions, the
audit log.

Registered on the main app by `kefu.cli` (`kefu serve`, `kefu db/keys/models/audit ...`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console, say_answers
from kefu.config import KefuConfig


def promotion_gate(cfg: KefuConfig) -> Callable[[str, str], dict[str, Any]]:
    """The eval comparison (eval.gate thresholds) that `kefu models promote` and the admin API check before
    promoting; passed to serving from here, since serving does not import eval."""

    def gate(a_dir: str, b_dir: str) -> dict[str, Any]:
        from kefu.eval.compare import run_compare

        result = run_compare(Path(a_dir), Path(b_dir), cfg.eval.gate)
        return {"passed": result.passed, "failures": result.failures, "a": a_dir, "b": b_dir}

    return gate


def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address; default serve.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default serve.port.")] = None,
) -> None:
    """Run the OpenAI-compatible customer-service gateway (migrates the store first)."""
    from kefu.serve.ops import run_serve

    cfg = cfg_from(config, set_)
    if cfg.serve.engine == "local":
        say_answers(cfg)
    run_serve(cfg, host, port, gate=promotion_gate(cfg))


db_app = typer.Typer(help="The gateway's store (serve.db_url).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Apply the store's migrations up to the newest schema."""
    from kefu.serve.ops import run_db_upgrade

    console.print(f"[green]store at newest schema[/]: {run_db_upgrade(cfg_from(config, set_))}")


# ----------------------------------------------------------------------------- keys
keys_app = typer.Typer(help="API keys of the gateway (roles: client, agent, admin).", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="client (chat), agent (handoff queue) or admin (everything).")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    rate_limit: Annotated[int | None, typer.Option(help="Per minute; default serve.rate_limit_per_minute.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from kefu.serve.ops import run_keys_create

    print(run_keys_create(cfg_from(config, set_), role, name, rate_limit))
    console.print("[yellow]Store this key now: it cannot be shown again.[/]")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List keys (ids, roles, revoked or not); secrets are never shown."""
    from kefu.serve.ops import run_keys_list

    for k in run_keys_list(cfg_from(config, set_)):
        state = "revoked" if k["revoked"] else "active"
        print(f"{k['id']}\t{k['role']}\t{state}\t{k['name']}\t{k['created_at']}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `kefu keys list`).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Revoke a key (servers stop accepting it within serve.key_cache_s seconds)."""
    from kefu.serve.ops import run_keys_revoke

    run_keys_revoke(cfg_from(config, set_), key_id)
    console.print(f"[green]revoked[/] {key_id}")


# ----------------------------------------------------------------------------- models
models_app = typer.Typer(help="Model versions served by the gateway.", no_args_is_help=True)


@models_app.command("list")
def models_list(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List model versions with status and traffic share."""
    from kefu.serve.ops import run_models_list

    for v in run_models_list(cfg_from(config, set_)):
        print(f"{v.name}\t{v.kind}\t{v.status}\t{v.traffic_percent}%\t{v.path or ''}")


@models_app.command("register")
def models_register(
    name: Annotated[str, typer.Argument(help="Version name, e.g. sft-2026-11-21.")],
    path: Annotated[str | None, typer.Option(help="Adapter or merged-model folder, or the upstream model name.")],
    kind: Annotated[str, typer.Option(help="adapter, merged or upstream.")] = "adapter",
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Register a version (it gets no traffic until promoted)."""
    from kefu.serve.ops import run_models_register

    v = run_models_register(cfg_from(config, set_), name, kind, path)
    console.print(f"[green]registered[/] {v.name} ({v.kind})")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered version to promote.")],
    percent: Annotated[int, typer.Option(help="Traffic share; below 100 makes it a canary.")] = 100,
    eval_a: Annotated[str | None, typer.Option(help="Eval run of the current model (gate baseline).")] = None,
    eval_b: Annotated[str | None, typer.Option(help="Eval run of this version; with --eval-a, gate must pass.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Send traffic to a version; running servers switch within serve.versions_refresh_s."""
    from kefu.serve.ops import run_models_promote

    cfg = cfg_from(config, set_)
    v = run_models_promote(cfg, name, percent, eval_a, eval_b, promotion_gate(cfg))
    console.print(f"[green]{v.name} is {v.status}[/] with {v.traffic_percent}% of traffic")


@models_app.command("rollback")
def models_rollback(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Undo the last promotion (withdraw the canary, or restore the previous active version)."""
    from kefu.serve.ops import run_models_rollback

    console.print(f"[green]rolled back[/]: {run_models_rollback(cfg_from(config, set_))}")


# ----------------------------------------------------------------------------- audit
audit_app = typer.Typer(help="The gateway's hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Check the whole chain; exit 1 and print the first bad row when any row was edited or deleted."""
    from kefu.serve.ops import run_audit_verify

    v = run_audit_verify(cfg_from(config, set_))
    if not v.ok:
        console.print(f"[red]audit log BROKEN at row {v.bad_id}[/]: {v.problem}")
        if v.bad_row:
            print(v.bad_row)
        raise typer.Exit(1)
    console.print(f"[green]audit log intact[/]: {v.rows} rows")


# ----------------------------------------------------------------------------- flywheel
@models_app.command("watch")
def models_watch(
    loop: Annotated[bool, typer.Option(help="Keep checking every flywheel.watch_interval_s seconds.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Compare the canary's live metrics with the active version's; roll it back when it is significantly worse."""
    import json
    import time

    from kefu.flywheel.canary import watch_once
    from kefu.serve.ops import open_store

    cfg = cfg_from(config, set_)
    store = open_store(cfg)
    while True:
        v = watch_once(store, cfg.flywheel)
        console.print(f"[bold]{v.action}[/] {v.canary or ''}: {'; '.join(v.reasons)}")
        for name, m in v.metrics.items():
            print(name, json.dumps(m, ensure_ascii=False))
        if not loop or v.action in ("rollback", "none"):
            return
        time.sleep(cfg.flywheel.watch_interval_s)
