"""`kefu init`, `kefu config show|docs`, `kefu demo`: write a project, inspect its config, run the sample shop end
to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kefu.cli_options import ConfigOpt, SetOpt, cfg_from, console


def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    blank: Annotated[
        bool, typer.Option("--blank", help="An empty project (persona and policy limits to fill in, empty kb/).")
    ] = False,
) -> None:
    """Write a working project (kefu.yaml + the sample shop's data) you can edit, or a blank one for your shop."""
    from kefu.project import init_project

    written = init_project(directory, blank=blank)
    if blank:
        console.print(
            f"[green]Blank project written to {written}[/]. Next: fill in persona and guard.policy_limits in "
            f"{directory}/kefu.yaml, put your documents into {directory}/kb/, then: cd {directory} && "
            "kefu kb ingest && kefu data prepare"
        )
    else:
        console.print(f"[green]Project written to {written}[/]. Next: cd {directory} && kefu data prepare")


config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


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


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo project and its outputs.")] = Path(
        "kefu-demo"
    ),
    full: Annotated[
        bool, typer.Option("--full/--quick", "--gpu", help="Train on all data with the full prompt (meant for a GPU).")
    ] = False,
    set_: SetOpt = None,
) -> None:
    """The sample shop end to end on the embedded default model: before/after answers, metrics and a report."""
    from kefu.demo import run_demo

    result = run_demo(out, full=full, extra=set_)
    if not result.identity_ok:
        raise typer.Exit(1)
