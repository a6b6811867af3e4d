"""`kefu init`: the sample shop copied whole into a new or empty folder, never over existing files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.config import load_config
from kefu.errors import KefuError
from kefu.project import init_project, sample_shop


def test_copies_the_sample_shop(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    written = init_project(target)
    assert written == target.resolve()
    src = Path(str(sample_shop()))
    expected = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert copied == expected
    assert (target / "kefu.yaml").read_bytes() == (src / "kefu.yaml").read_bytes()
    cfg = load_config(target / "kefu.yaml")
    assert all(cfg.resolve(s.path).is_file() for s in cfg.data.sources)


def test_refuses_non_empty_folder_and_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(KefuError, match="not empty"):
        init_project(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    with pytest.raises(KefuError, match="not a folder"):
        init_project(tmp_path / "mine.txt")
