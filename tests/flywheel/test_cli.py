"""The flywheel's commands: `kefu data from-logs`, `kefu cycle --dry-run`, `kefu models watch`, the split in
`kefu models list`."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kefu.cli import app as cli


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    sets = [f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}", f"flywheel.export_dir={tmp_path / 'logs'}"]
    r = CliRunner().invoke(cli, [*args, *(x for s in sets for x in ("--set", s))])
    return r.exit_code, r.output


def test_flywheel_commands(tmp_path: Path) -> None:
    code, out = _run(tmp_path, "data", "from-logs", "--since", "2026-01-01")
    assert code == 0, out
    assert json.loads((tmp_path / "logs" / "export.json").read_text())["since"] == "2026-01-01T00:00:00+00:00"
    code, out = _run(tmp_path, "data", "from-logs", "--since", "last tuesday")
    assert code != 0 and "expected a date" in out
    code, out = _run(tmp_path, "cycle", "--dry-run")
    assert code == 0 and "8 canary" in out and "10% of traffic" in out and "5 eval_live" in out
    assert "1 epoch(s)" in out and not list(tmp_path.glob("runs/cycle-*"))
    code, out = _run(tmp_path, "models", "watch")
    assert code == 0 and "no canary is running" in out
    assert _run(tmp_path, "models", "register", "v2", "--kind", "upstream", "--path", "m2")[0] == 0
    assert _run(tmp_path, "models", "promote", "v2", "--percent", "10")[0] == 0
    code, out = _run(tmp_path, "models", "list")
    assert "base\tbase\tactive\t90%" in out and "v2\tupstream\tcanary\t10%" in out
    code, out = _run(tmp_path, "models", "watch")
    assert code == 0 and "wait" in out and "min_conversations" in out
