from __future__ import annotations

import json

from typer.testing import CliRunner

from kefu.cli import app
from kefu.config import KefuConfig

runner = CliRunner()


def _kb(cfg: KefuConfig, *args: str) -> str:
    result = runner.invoke(app, ["kb", *args, "-c", str(cfg.root / "kefu.yaml")])
    assert result.exit_code == 0, result.output
    return result.output


def test_kb_cli_ingest_search_versions_rollback(kb_cfg: KefuConfig) -> None:
    assert "kb version 1 active" in _kb(kb_cfg, "ingest")
    out = json.loads(_kb(kb_cfg, "search", "退货运费谁出", "-k", "3", "--json"))
    assert out["query"] == "退货运费谁出" and len(out["hits"]) == 3
    top = out["hits"][0]
    assert (top["source"], top["heading"]) == ("kb/returns.md", ["退货政策", "运费谁出"])
    assert top["dense_rank"] is not None and top["bm25_rank"] is not None and top["score"] > 0

    table = _kb(kb_cfg, "search", "Which carrier", "-k", "2", "--mode", "bm25")
    assert "kb/en/shipping.md" in table and "Shipping > Carriers" in table and "fused" in table

    assert "kb version 2 active" in _kb(kb_cfg, "ingest")
    assert "kb version 1 active" in _kb(kb_cfg, "rollback")
    versions = _kb(kb_cfg, "versions")
    assert "* │ 1" in versions.replace("┃", "│") or "*" in versions.splitlines()[-2]


def test_kb_cli_errors_are_one_line(kb_cfg: KefuConfig) -> None:
    result = runner.invoke(app, ["kb", "search", "x", "--mode", "fuzzy", "-c", str(kb_cfg.root / "kefu.yaml")])
    assert result.exit_code == 2 and "expected hybrid, dense or bm25" in result.output
