"""kefu.yaml: one typed config, every field documented once, validated at load with the field's path.

One module per group of sections; import from here (`from kefu.config import load_config, ModelConfig`), the
modules' layout is not part of the interface. load_config(path, overrides) is the one way to read a config.
"""

from __future__ import annotations

from kefu.config.actions import ActionConfig, ActionsConfig
from kefu.config.base import KefuConfigError
from kefu.config.data import CleanConfig, DataConfig, PIIConfig, SourceConfig, SynthConfig
from kefu.config.kb import KBConfig
from kefu.config.lifecycle import EvalConfig, FlywheelConfig, GateConfig
from kefu.config.load import KefuConfig, load_config, parse_override
from kefu.config.model import ModelConfig, TrainConfig
from kefu.config.persona import PersonaConfig
from kefu.config.serve import GuardConfig, ServeConfig

__all__ = [
    "ActionConfig",
    "ActionsConfig",
    "CleanConfig",
    "DataConfig",
    "EvalConfig",
    "FlywheelConfig",
    "GateConfig",
    "GuardConfig",
    "KBConfig",
    "KefuConfig",
    "KefuConfigError",
    "ModelConfig",
    "PIIConfig",
    "PersonaConfig",
    "ServeConfig",
    "SourceConfig",
    "SynthConfig",
    "TrainConfig",
    "load_config",
    "parse_override",
]
