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


def _sample_values() -> set[str]:
    """Every persona string and policy number of the sample shop: none may leak into a blank project."""
    cfg = load_config(Path(str(sample_shop())) / "kefu.yaml")
    texts = {v for v in cfg.persona.model_dump().values() if isinstance(v, str) and len(v) > 1}
    texts |= {x for v in cfg.persona.model_dump().values() if isinstance(v, list) for x in v}
    return texts - {"您好"} | {"青禾", "400-820-6688", "中通", "return_days: 7"}


def test_blank_project_has_nothing_of_the_sample_shop(tmp_path: Path) -> None:
    target = init_project(tmp_path / "mine", blank=True)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["kefu.yaml"]
    assert (target / "kb").is_dir() and not any((target / "kb").iterdir()) and (target / "data").is_dir()
    text = (target / "kefu.yaml").read_text(encoding="utf-8")
    leaked = [v for v in _sample_values() if v in text]
    assert leaked == []
    cfg = load_config(target / "kefu.yaml")
    assert cfg.guard.policy_limits == {} and cfg.data.sources == []
    assert cfg.persona.name == "" and cfg.persona.can_do == [] and cfg.persona.forbidden_phrases == []


def test_blank_project_asks_to_be_filled_in_then_prepares(tmp_path: Path) -> None:
    from kefu.data.prepare import run_prepare

    target = init_project(tmp_path / "mine", blank=True)
    with pytest.raises(KefuError, match=r"fill in persona\.name, persona\.name_en, persona\.shop, .*persona\.handoff"):
        run_prepare(load_config(target / "kefu.yaml"))
    filled = {"name": "小麦", "name_en": "Mai", "shop": "麦田书店", "shop_en": "Wheatfield Books",
              "company": "麦田文化有限公司", "hours": "每天 10:00-19:00", "handoff": "回复“人工”"}  # fmt: skip
    cfg = load_config(target / "kefu.yaml", [f"persona.{k}={v}" for k, v in filled.items()])
    from kefu.rag.synth import synthesize

    with pytest.raises(KefuError, match=r"kb\.sources: 'kb' matches no file"):  # synth is on: documents first
        synthesize(cfg)
    report = run_prepare(cfg)
    sft = (target / "prepared" / "sft.jsonl").read_text(encoding="utf-8")
    assert report.identity == cfg.data.identity_samples and "麦田书店" in sft and "小禾" not in sft


def test_kb_folder_source_takes_every_supported_document(tmp_path: Path) -> None:
    from kefu.rag.index import find_sources

    target = init_project(tmp_path / "mine", blank=True)
    (target / "kb" / "sub").mkdir()
    for name in ("returns.md", "sub/faq.csv", "notes.docx", ".hidden.swp"):
        (target / "kb" / name).write_text("x", encoding="utf-8")
    found = [p.relative_to(target / "kb").as_posix() for p in find_sources(load_config(target / "kefu.yaml"))]
    assert found == ["returns.md", "sub/faq.csv"]
