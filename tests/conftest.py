from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import build_tiny_llama, build_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 + BPE tokenizer with a ChatML template, saved once per test session. Treat as read-only."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
