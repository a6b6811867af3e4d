"""Options and helpers every command group shares: --config, --set, loading the config, the error console."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kefu.config import KefuConfig, load_config

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
