"""The training page in headless Chromium: an admin starts a job on a tiny model, watches the loss curve and the
log grow live (pushed, no reload), and cancels it; the page says so and the job's process is gone."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.serve.conftest import Server
from tests.ui.test_jobs import project_gateway
from tests.ui.test_ui_e2e import CHROMIUM, _assert_cjk, _login, artifacts, browser, sync_api

__all__ = ["artifacts", "browser"]  # fixtures shared with test_ui_e2e
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium)")


@pytest.fixture
def gateway(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Server]:
    srv = project_gateway(tmp_path, tiny_model_dir)
    yield srv
    srv.stop()


def test_start_watch_the_loss_curve_and_cancel(gateway: Server, browser: Any, artifacts: Path) -> None:
    ctx = browser.new_context(locale="zh-CN")
    page = ctx.new_page()
    page.goto(gateway.url + "/ui/admin")
    _login(page, gateway.key("admin"))
    page.get_by_role("tab", name="训练", exact=True).click()
    steps = page.get_by_label("训练步数（-1 按轮数）")
    sync_api.expect(steps).to_have_value("40")  # the form starts from the server's kefu.yaml
    steps.fill("100000")
    page.get_by_label("每 N 步记录损失").fill("1")
    page.get_by_label("学习率").press("Tab")  # labelled, reachable by keyboard
    page.get_by_test_id("start-job").click()
    sync_api.expect(page.locator("#announce")).to_contain_text("已开始", timeout=10_000)
    sync_api.expect(page.get_by_test_id("job-status")).to_contain_text("运行中", timeout=10_000)
    # the curve grows while the page stays as it is: each logged step arrives over the job's event stream
    chart = page.get_by_test_id("loss-chart").locator("svg")
    sync_api.expect(chart).to_have_attribute("data-points", _at_least(3), timeout=180_000)
    first = int(chart.get_attribute("data-points") or 0)
    sync_api.expect(chart).not_to_have_attribute("data-points", str(first), timeout=30_000)
    sync_api.expect(page.get_by_test_id("job-log")).to_contain_text("== train")
    sync_api.expect(page.get_by_test_id("job-steps")).to_contain_text("prepare ✓")
    page.screenshot(path=str(artifacts / "7-admin-training.png"), full_page=True)
    _assert_cjk(page, "损失曲线")
    page.get_by_test_id("cancel-job").click()
    sync_api.expect(page.get_by_test_id("job-status")).to_contain_text("已取消", timeout=15_000)
    sync_api.expect(page.get_by_test_id("cancel-job")).to_be_hidden()
    sync_api.expect(page.locator("#joblist")).to_contain_text("已取消")
    job = gateway.svc.jobs.list()[0]
    assert job["status"] == "cancelled" and job["settings"] == {"train.max_steps": 100000, "train.logging_steps": 1}
    _gone(gateway.svc.jobs.path(job["id"]) / "pid")
    ctx.close()


def _at_least(n: int) -> re.Pattern[str]:
    return re.compile(rf"^([{n}-9]|\d\d+)$")


def _gone(pid_file: Path, timeout: float = 10.0) -> None:
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the cancelled job's process still runs"


def test_a_finished_job_is_compared_with_the_live_version_and_promoted(
    gateway: Server, browser: Any, artifacts: Path
) -> None:
    ctx = browser.new_context(locale="zh-CN")
    page = ctx.new_page()
    page.goto(gateway.url + "/ui/admin")
    _login(page, gateway.key("admin"))
    page.get_by_role("tab", name="训练", exact=True).click()
    page.get_by_label("训练步数（-1 按轮数）").fill("4")
    page.get_by_label("每 N 步记录损失").fill("2")
    page.get_by_label("评测条数上限").fill("1")
    page.get_by_test_id("start-job").click()
    gate = page.get_by_test_id("gate")
    sync_api.expect(gate).to_contain_text("门禁: 通过", timeout=240_000)
    sync_api.expect(page.get_by_test_id("job-status")).to_contain_text("完成")
    report = page.get_by_test_id("job-report")
    sync_api.expect(report).to_contain_text("线上版本评测对比 (base)")  # what it is compared with
    assert report.locator("tbody tr").count() >= 5  # a metric per row, live vs new
    page.screenshot(path=str(artifacts / "8-admin-training-report.png"), full_page=True)
    page.get_by_test_id("vname").fill("v-e2e")
    page.get_by_role("button", name="注册并发布").click()
    sync_api.expect(page.locator("#announce")).to_contain_text("v-e2e: active 100%", timeout=15_000)
    page.get_by_role("tab", name="模型版本").click()
    sync_api.expect(page.get_by_test_id("eval-v-e2e")).to_contain_text("fact_accuracy")
    ctx.close()
