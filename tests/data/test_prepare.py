"""`kefu data prepare`: the sample shop end to end, weights, leakage-free split, atomic output, and the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kefu.config import KefuConfig, load_config
from kefu.data import prepare
from kefu.data.clean import NearDuplicateIndex
from kefu.data.schema import Conversation, Preference
from kefu.errors import KefuError
from kefu.project import init_project


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[KefuConfig, prepare.PrepareReport]:
    root = init_project(tmp_path_factory.mktemp("shop") / "proj")
    cfg = load_config(root / "kefu.yaml")
    return cfg, prepare.run_prepare(cfg)


def test_sample_shop_report_matches_the_files(shop: tuple[KefuConfig, prepare.PrepareReport]) -> None:
    cfg, report = shop
    out = cfg.resolve(cfg.data.output_dir)
    sft, dpo, held = lines(out / "sft.jsonl"), lines(out / "dpo.jsonl"), lines(out / "eval.jsonl")
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["files"] == {"sft.jsonl": len(sft), "dpo.jsonl": len(dpo), "eval.jsonl": len(held)}
    sources = saved["sources"]
    assert set(sources) == {s.path for s in cfg.data.sources}
    assert sum(s["train"] for s in sources.values()) + saved["identity"] == len(sft)
    assert sum(s["eval"] for s in sources.values()) == len(held)
    assert sum(s["dpo"] for s in sources.values()) == len(dpo)
    for s in sources.values():
        assert s["read"] - sum(s["dropped"].values()) == s["kept"]
    assert saved["dropped"] == dict(sum((Counter(s["dropped"]) for s in sources.values()), start=Counter()))
    assert saved["identity"] == cfg.data.identity_samples == sum(1 for r in sft if r["meta"]["source"] == "persona")
    assert 0 < len(held) <= round(0.06 * sum(s["kept"] for s in sources.values() if s["dpo"] == 0)) + 1
    for row in sft + held:
        Conversation.model_validate(row)
    for row in dpo:
        Preference.model_validate(row)
    assert saved["lengths"]["chars"]["p50"] <= saved["lengths"]["chars"]["p95"] <= saved["lengths"]["chars"]["max"]
    assert (out / "length_hist.png").read_bytes().startswith(b"\x89PNG")
    assert report.elapsed_s < 30


def test_sample_shop_output_is_masked_and_clean(shop: tuple[KefuConfig, prepare.PrepareReport]) -> None:
    cfg, report = shop
    text = (cfg.resolve(cfg.data.output_dir) / "sft.jsonl").read_text(encoding="utf-8")
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text)  # the chat log's phone numbers are masked
    assert report.dropped.get("chatlog_no_customer", 0) + report.dropped.get("chatlog_no_answer", 0) > 0
    assert "near_duplicate" in report.dropped


def test_no_near_duplicate_leaks_across_the_split(shop: tuple[KefuConfig, prepare.PrepareReport]) -> None:
    cfg, _ = shop
    out = cfg.resolve(cfg.data.output_dir)
    index = NearDuplicateIndex(cfg.data.clean.near_threshold, seed=0)
    for row in lines(out / "sft.jsonl"):
        index.add(index.signature(prepare.customer_text(Conversation.model_validate(row))))
    for row in lines(out / "eval.jsonl"):
        assert index.matches(index.signature(prepare.customer_text(Conversation.model_validate(row)))) == []


def test_split_keeps_clusters_together() -> None:
    from kefu.data.schema import Turn

    def conv(q: str) -> Conversation:
        return Conversation(turns=[Turn(role="user", content=q), Turn(role="assistant", content="好的")])

    base = "请问退货的运费由谁承担，质量问题和非质量问题一样吗"
    convs = [conv(base + "？" * i) for i in range(5)] + [
        conv(f"第{i}个完全不同的问题：订单{i}怎么开发票") for i in range(15)
    ]
    train, held = prepare.split_by_cluster(convs, 0.25, 0.85, seed=0)
    assert len(train) + len(held) == 20 and len(held) <= 5
    dup_sides = {"train" if c in train else "eval" for c in convs[:5]}
    assert len(dup_sides) == 1


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_sources(root: Path, n: int = 20) -> None:
    a = [
        {"instruction": f"问题{i}：第{i}号订单怎么开发票", "output": f"您好，订单{i}确认收货后申请。"} for i in range(n)
    ]
    b = [{"context": f"第{i}件商品什么时候发货呀", "response": f"您好，第{i}件商品48小时内发货。"} for i in range(n)]
    write_jsonl(root / "a.jsonl", a)
    write_jsonl(root / "b.jsonl", b)


def small_config(root: Path, **data: Any) -> KefuConfig:
    cfg = load_config(None, [f"data.output_dir={root / 'out'}"])
    sources = [{"path": str(root / "a.jsonl"), "weight": 2.0}, {"path": str(root / "b.jsonl"), "weight": 0.5}]
    fields = {"sources": sources, "eval_fraction": 0.0, "identity_samples": 0, **data}
    cfg.data = cfg.data.model_validate({**cfg.data.model_dump(), **fields})
    cfg.data.clean.dedup = "exact"
    return cfg


def test_weights_repeat_and_subsample(tmp_path: Path) -> None:
    write_sources(tmp_path)
    report = prepare.run_prepare(small_config(tmp_path))
    by_source = {Path(s.path).name: s for s in report.sources}
    assert (by_source["a.jsonl"].train, by_source["b.jsonl"].train) == (40, 10)
    sft = lines(tmp_path / "out" / "sft.jsonl")
    assert len(sft) == 50 and report.files["sft.jsonl"] == 50


def test_failure_mid_run_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sources(tmp_path)
    cfg = small_config(tmp_path)

    def boom(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(prepare, "write_histogram", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare.run_prepare(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]


def test_failure_keeps_the_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sources(tmp_path)
    cfg = small_config(tmp_path)
    prepare.run_prepare(cfg)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    (tmp_path / "a.jsonl").write_text('{"instruction": "q", "output": 5}\n', encoding="utf-8")  # a bad file now
    with pytest.raises(KefuError, match=r"a\.jsonl:1: output: wrong type: expected a string, got int"):
        prepare.run_prepare(cfg)
    monkeypatch.setattr(prepare, "_write_jsonl", lambda *a: (_ for _ in ()).throw(OSError("full")))
    write_sources(tmp_path)
    with pytest.raises(OSError, match="full"):
        prepare.run_prepare(cfg)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "out"]


def test_token_lengths_with_a_local_tokenizer(tmp_path: Path, tiny_model_dir: Path) -> None:
    write_sources(tmp_path)
    cfg = small_config(tmp_path)
    cfg.model.tokenizer = str(tiny_model_dir)
    cfg.data.clean.max_tokens = 10_000
    report = prepare.run_prepare(cfg)
    tokens = report.lengths["tokens"]
    assert tokens is not None and 0 < tokens["min"] <= tokens["max"]


def test_max_tokens_without_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg.data.clean.max_tokens = 100
    with pytest.raises(KefuError, match=r"model\.tokenizer"):
        prepare.run_prepare(cfg)


def test_init_then_prepare_via_cli(tmp_path: Path) -> None:
    def kefu(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "kefu", *args]
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)

    made = kefu("init", "proj", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    again = kefu("init", "proj", cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr
    done = kefu("data", "prepare", cwd=tmp_path / "proj")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "proj" / "prepared"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["sft.jsonl", "dpo.jsonl", "eval.jsonl", "report.json", "length_hist.png"]
    )
    assert "kefu data prepare" in done.stdout and "persona (identity)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == sorted(
        ["FACTS.md", "data", "kb", "kefu.yaml", "prepared"]
    )


def test_nothing_to_prepare_is_said_plainly(tmp_path: Path) -> None:
    """No sources, no KB and kefu's placeholder persona: no identity data for a shop that does not exist."""
    (tmp_path / "kefu.yaml").write_text("kb:\n  sources: []\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"nothing to prepare.*kb\.sources is empty.*小客 of 示例小店"):
        prepare.run_prepare(load_config(tmp_path / "kefu.yaml"))
    (tmp_path / "kefu.yaml").write_text("persona:\n  name: ''\n  shop: 某店\n", encoding="utf-8")
    with pytest.raises(KefuError, match=r"fill in persona\.name before"):
        prepare.run_prepare(load_config(tmp_path / "kefu.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kefu.yaml"]
    filled = "persona:\n  name: 小麦\n  shop: 麦田书店\n  company: 麦田文化有限公司\ndata:\n  output_dir: out\n"
    (tmp_path / "kefu.yaml").write_text(filled, encoding="utf-8")
    report = prepare.run_prepare(load_config(tmp_path / "kefu.yaml"))
    assert report.identity == 60 and "小麦" in (tmp_path / "out" / "sft.jsonl").read_text(encoding="utf-8")


def test_outputs_get_ordinary_file_permissions(tmp_path: Path) -> None:
    """Temp-then-rename used to leave 0600 files (mkstemp); outputs and reports should read like any file."""
    import os
    import stat

    from kefu.io import write_json

    write_sources(tmp_path)
    old = os.umask(0o022)
    try:
        prepare.run_prepare(small_config(tmp_path))
        write_json(tmp_path / "report.json", {"ok": True})
    finally:
        os.umask(old)
    out = tmp_path / "out"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.iterdir(), tmp_path / "report.json"]}
    assert modes == {name: 0o755 if name == "out" else 0o644 for name in modes}
