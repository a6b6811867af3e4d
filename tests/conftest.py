from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tiny import build_tiny_llama, build_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 + BPE tokenizer with a ChatML template, saved once per test session. Treat as read-only."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The reference shop backend (kefu.shop) on a free port, seeded; the credential where
    configs/shop-actions.yaml reads it, i.e. what the gateway sends."""
    from kefu.shop.seed import seed
    from tests.actions.conftest import TOKEN, start_shop

    monkeypatch.setenv("KEFU_SHOP_AUTH", f"Bearer {TOKEN}")
    srv = start_shop(seed(tmp_path / "shop.sqlite"))
    yield srv
    srv.stop()
