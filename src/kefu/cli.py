"""The `kefu` command: the top-level group and the entry point (`kefu.cli:main`).

Commands are thin: parse flags, load the config, call a run_*(cfg) function, print its result; the work itself
lives in the layers (kefu.data, kefu.train, ...). Each group of commands lives in its own cli_*.py module and is
registered here, in the order `kefu --help` lists them.
"""

from __future__ import annotations

import sys

import typer

from kefu import cli_gateway as gateway
from kefu.cli_chat import chat_cmd
from kefu.cli_data import data_app, pii_app
from kefu.cli_flywheel import cycle
from kefu.cli_kb import kb_app
from kefu.cli_options import console
from kefu.cli_project import config_app, demo, init
from kefu.cli_redteam import redteam
from kefu.cli_train import eval_app, export_cmd, train
from kefu.errors import KefuError
from kefu.shop.cli import shop_app

app = typer.Typer(
    help="kefu: a small open LLM as your shop's customer-service assistant.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.command()(init)  # kefu.cli_project
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")  # kefu.cli_data
app.command()(cycle)  # kefu.cli_flywheel
app.add_typer(pii_app, name="pii")  # kefu.cli_data
app.command()(train)  # kefu.cli_train
app.add_typer(eval_app, name="eval")
app.add_typer(kb_app, name="kb")  # kefu.cli_kb
app.command("export")(export_cmd)  # kefu.cli_train
app.command("chat")(chat_cmd)  # kefu.cli_chat
app.command()(gateway.serve)  # the gateway and its store: `kefu serve`, `kefu db/keys/models/audit ...`
for group, name in ((gateway.db_app, "db"), (gateway.keys_app, "keys"), (gateway.models_app, "models"),
                    (gateway.audit_app, "audit")):  # fmt: skip
    app.add_typer(group, name=name)
app.add_typer(shop_app, name="shop")  # kefu.shop.cli
app.command("redteam")(redteam)  # kefu.cli_redteam
app.command()(demo)  # kefu.cli_project


def main() -> None:
    """Entry point: user-facing errors become one clear message and exit code 2."""
    try:
        app()
    except KefuError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(2)
