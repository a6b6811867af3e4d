"""The whole kefu.yaml (KefuConfig) and its one entry point, load_config(path, overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from kefu.config.actions import ActionsConfig
from kefu.config.base import KefuConfigError, _Section
from kefu.config.data import DataConfig
from kefu.config.kb import KBConfig
from kefu.config.lifecycle import EvalConfig, FlywheelConfig
from kefu.config.model import ModelConfig, TrainConfig
from kefu.config.persona import PersonaConfig
from kefu.config.serve import GuardConfig, ServeConfig


class KefuConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig, description="Data sources and preparation.")
    persona: PersonaConfig = Field(default_factory=PersonaConfig, description="Who the assistant is.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model and adapter.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")
    kb: KBConfig = Field(default_factory=KBConfig, description="Knowledge base.")
    guard: GuardConfig = Field(default_factory=GuardConfig, description="Guardrails.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving.")
    flywheel: FlywheelConfig = Field(
        default_factory=FlywheelConfig, description="Logs -> training data -> retrain -> gate -> canary."
    )
    actions: ActionsConfig = Field(default_factory=ActionsConfig, description="Shop actions: orders and tracking.")
    root: Path = Field(default=Path("."), exclude=True, description="Folder relative paths resolve against.")

    def resolve(self, p: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.root / path


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise KefuConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`section.key=value` -> (path, YAML-parsed value), so numbers, booleans and lists keep their types."""
    if "=" not in item:
        raise KefuConfigError(f"--set {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw else ""


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> KefuConfig:
    """Read kefu.yaml (or only defaults when path is None), apply `--set` overrides, validate."""
    tree: dict[str, Any] = {}
    source = "<defaults>"
    root = Path.cwd()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise KefuConfigError(f"{p}: config file not found")
        source, root = str(p), p.resolve().parent
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as e:
            raise KefuConfigError(f"{p}: not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise KefuConfigError(f"{p}: the top level must be a mapping of sections")
        tree = loaded or {}
    for item in overrides or []:
        _set_dotted(tree, *parse_override(item))
    try:
        cfg = KefuConfig.model_validate(tree)
    except ValidationError as e:
        raise KefuConfigError(_format_errors(source, e)) from None
    cfg.root = root
    return cfg
