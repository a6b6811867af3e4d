"""`kefu shop seed|serve`: the reference shop backend from the command line (registered by kefu.cli)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from kefu.cli_options import console

shop_app = typer.Typer(help="The reference shop backend (orders, tracking, returns, coupons).", no_args_is_help=True)

DbOpt = Annotated[Path, typer.Option("--db", help="SQLite file of the shop.")]


@shop_app.command("seed")
def shop_seed(
    db: DbOpt = Path("shop.sqlite"),
    customers: Annotated[int, typer.Option(min=1, help="Customers to create.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same shop.")] = 7,
) -> None:
    """Write a fresh, deterministically seeded shop database (replaces the file)."""
    from kefu.shop.seed import seed as run_seed

    console.print(f"[green]seeded[/] {run_seed(db, customers, seed)}")


@shop_app.command("serve")
def shop_serve(
    db: DbOpt = Path("shop.sqlite"),
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8100,
    token_env: Annotated[str, typer.Option(help="Environment variable holding the bearer token.")] = "KEFU_SHOP_TOKEN",
) -> None:
    """Serve the shop's API (seeding the database first when the file does not exist)."""
    import uvicorn

    from kefu.shop.backend import create_shop_app
    from kefu.shop.seed import seed as run_seed

    if not db.exists():
        console.print(f"[yellow]{db} not found: seeding it[/]")
        run_seed(db)
    app = create_shop_app(db, os.environ.get(token_env, ""))
    uvicorn.run(app, host=host, port=port, log_level="info")
