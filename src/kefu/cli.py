"""Thin command line: parse flags, load the config, call a run_*(cfg) function, print its result.

Each command group lives in its own block; the work itself lives in the layers (kefu.data, kefu.train, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kefu.config import KefuConfig, load_config
from kefu.errors import KefuError

app = typer.Typer(
    help="kefu: a small open LLM as your shop's customer-service assistant.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to kefu.yaml.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: section.key=value (repeatable).")
]


def cfg_from(config: Path | None, overrides: list[str] | None) -> KefuConfig:
    """Load kefu.yaml (./kefu.yaml when present and none is named) with --set overrides."""
    if config is None and Path("kefu.yaml").is_file():
        config = Path("kefu.yaml")
    return load_config(config, overrides)


# ----------------------------------------------------------------------------- init
@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")]) -> None:
    """Write a working project (kefu.yaml + the sample shop's data) you can edit."""
    from kefu.project import init_project

    written = init_project(directory)
    console.print(f"[green]Project written to {written}[/]. Next: cd {directory} && kefu data prepare")


# ----------------------------------------------------------------------------- config
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the effective config (file + --set overrides + defaults) as YAML."""
    from kefu.configdoc import config_yaml

    typer.echo(config_yaml(cfg_from(config, set_)))


@config_app.command("docs")
def config_docs() -> None:
    """Print every config field with its type, default and description (Markdown)."""
    from kefu.configdoc import config_markdown

    typer.echo(config_markdown())


# ----------------------------------------------------------------------------- data
data_app = typer.Typer(help="Read, check, clean and prepare training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# ----------------------------------------------------------------------------- pii
pii_app = typer.Typer(help="Mask personal data.", no_args_is_help=True)
app.add_typer(pii_app, name="pii")


def main() -> None:
    """Entry point: user-facing errors become one clear message and exit code 2."""
    try:
        app()
    except KefuError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(2)
