"""report.html and compare.html render in a real browser: headless Chromium, DOM and screenshot checked."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kefu.config import GateConfig
from kefu.eval.compare import run_compare
from tests.eval.test_compare import _run
from tests.eval.test_runner import ANSWERS, SIGN

_IMG = re.compile(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI: apt-get update && apt-get install -y chromium")
    pytest.skip("chromium not installed (apt-get install -y chromium); required in CI")


def _browse(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
    ]  # fmt: skip
    proc = subprocess.run([_chromium(), *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _check_page(page: Path, tmp: Path, plots: int) -> None:
    dom = _browse(page, tmp, "--dump-dom").stdout
    images = _IMG.findall(dom)
    assert len(images) >= plots
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    shot = tmp / f"{page.stem}.png"
    _browse(page, tmp, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("report")
    better = {**ANSWERS, "你是谁？": f"您好，我是青禾生活馆的智能客服小禾。{SIGN}"}
    return _run(tmp, "a", ANSWERS), _run(tmp, "b", better)


def test_report_renders_with_its_plots(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    report = two_runs[0] / "report.html"
    html = report.read_text(encoding="utf-8")
    assert 'alt="metrics"' in html and 'alt="latency"' in html and 'alt="per-category accuracy"' in html
    assert "我是ChatGPT" in html  # per-case answers are shown
    _check_page(report, tmp_path, plots=3)


def test_compare_report_renders(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    run_compare(*two_runs, GateConfig(max_p99_latency_increase=1000), out_dir=tmp_path / "cmp")
    html = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert "PASSED" in html and "main/id1" in html
    _check_page(tmp_path / "cmp" / "compare.html", tmp_path, plots=3)
