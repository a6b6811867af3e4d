"""Options and helpers the command groups share: --config, --set, loading the config, the error console, the
line that says what answers."""

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


def say_answers(cfg: KefuConfig, model: str | None = None) -> None:
    """What answers and at which precision, and why, first thing: the ONNX engine's int8/int4 or the weights'
    dtype under transformers (`model` is eval's --model, which replaces model.path)."""
    from kefu.answer.engines import answer_runtime

    if model:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": model})})
    console.print(answer_runtime(cfg).line(), soft_wrap=True, markup=False, highlight=False)
