"""`kefu kb ingest|search|versions|rollback`: the knowledge base's versions (kefu.rag)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console

kb_app = typer.Typer(help="Knowledge base: ingest documents, search them, manage versions.", no_args_is_help=True)


@kb_app.command("ingest")
def kb_ingest(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Read kb.sources, chunk, embed and index them as a new version, and switch to it."""
    from kefu.rag.index import run_ingest

    r = run_ingest(cfg_from(config, set_))
    console.print(
        f"[green]kb version {r.version} active[/]: {r.n_chunks} chunks from {r.n_sources} files "
        f"({r.n_embedded} embedded, {r.n_reused} reused) in {r.seconds:.1f}s"
    )


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("-k", help="Number of hits; default kb.top_k.")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Search the active version: hits with fused, dense and BM25 scores/ranks and their sources."""
    from kefu.rag.views import hits_json, hits_table, run_search

    if mode not in ("hybrid", "dense", "bm25"):
        raise typer.BadParameter("expected hybrid, dense or bm25", param_hint="--mode")
    hits = run_search(cfg_from(config, set_), query, k, mode)  # type: ignore[arg-type]
    if as_json:
        typer.echo(hits_json(query, hits))
    else:
        Console(width=200).print(hits_table(hits))


@kb_app.command("versions")
def kb_versions(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """List the kept versions; * marks the active one."""
    from kefu.rag.index import run_versions
    from kefu.rag.views import versions_table

    Console(width=200).print(versions_table(run_versions(cfg_from(config, set_))))


@kb_app.command("rollback")
def kb_rollback(
    version: Annotated[
        int | None, typer.Argument(help="Version to activate; default the one before the active.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Switch the active version back (one transaction; serving picks it up on the next query)."""
    from kefu.rag.index import run_rollback

    console.print(f"[green]kb version {run_rollback(cfg_from(config, set_), version)} active[/]")
