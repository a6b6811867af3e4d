"""Every YAML shipped in the repository loads; overrides and errors name the field; docs/config.md is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kefu.config import KefuConfigError, load_config
from kefu.configdoc import config_markdown

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(
    p
    for p in ROOT.rglob("*.y*ml")
    if p.suffix in {".yaml", ".yml"}
    and not {".venv", ".venv-ci", ".git"} & set(p.parts)
    and ".github" not in p.parts
    and "node_modules" not in p.parts
)
KEFU_YAMLS = [p for p in SHIPPED if p.name == "kefu.yaml" or p.parent.name == "configs"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_parses(path: Path) -> None:
    import yaml

    assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None


def test_there_are_shipped_configs() -> None:
    assert any(p.name == "kefu.yaml" for p in KEFU_YAMLS)


@pytest.mark.parametrize("path", KEFU_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.root == path.parent.resolve()


def test_overrides_keep_types_and_errors_name_the_field(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.lr=1e-4", "train.packing=true", "kb.sources=[a.md, b.md]"])
    assert cfg.train.lr == 1e-4 and cfg.train.packing is True and cfg.kb.sources == ["a.md", "b.md"]
    bad = tmp_path / "kefu.yaml"
    bad.write_text("train:\n  lr: fast\n  lora_rank: 8\n", encoding="utf-8")
    with pytest.raises(KefuConfigError) as e:
        load_config(bad)
    assert "train.lr" in str(e.value) and "train.lora_rank" in str(e.value) and str(bad) in str(e.value)


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kefu", "config", "show", "--set", "serve.port=notaport"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "serve.port" in r.stderr and "Traceback" not in r.stderr


def test_docs_config_md_is_current() -> None:
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8").strip() == config_markdown().strip()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.json")), ids=lambda p: p.name)
def test_shipped_deepspeed_configs_are_zero_configs(path: Path) -> None:
    import json

    ds = json.loads(path.read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] in (2, 3)


@pytest.mark.parametrize("path", KEFU_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_name_files_that_exist_and_usable_engines(path: Path) -> None:
    cfg = load_config(path)
    if cfg.train.deepspeed:
        assert cfg.resolve(cfg.train.deepspeed).is_file()
    if cfg.serve.engine == "upstream":
        assert cfg.serve.upstreams and all(u.startswith(("http://", "https://")) for u in cfg.serve.upstreams)
        assert all(u.rstrip("/").endswith("/v1") for u in cfg.serve.upstreams)  # OpenAI base URLs, as kefu calls them
