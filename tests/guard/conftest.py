from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import KefuConfig, load_config
from kefu.data.persona import system_prompt
from kefu.guard.output import Policy

SHOP = Path(__file__).resolve().parents[2] / "src/kefu/samples/shop/kefu.yaml"


@pytest.fixture(scope="session")
def shop_cfg() -> KefuConfig:
    return load_config(SHOP)


@pytest.fixture(scope="session")
def shop_policy(shop_cfg: KefuConfig) -> Policy:
    return Policy.from_config(shop_cfg, system_prompt(shop_cfg.persona))
