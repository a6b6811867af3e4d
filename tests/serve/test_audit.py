"""The audit log is append-only and hash-chained: `kefu audit verify` finds any edited or deleted row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from kefu.cli import app as cli
from kefu.serve import audit
from kefu.serve.db import Store
from kefu.serve.tables import AuditEvent


def _store(tmp_path: Path, n: int = 6) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'kefu.sqlite'}")
    for i in range(n):
        audit.record(store, "test", "answer", {"i": i, "model_version": "base"})
    return store


def _verify_cli(tmp_path: Path) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["audit", "verify", "--set", f"serve.db_url=sqlite:///{tmp_path / 'kefu.sqlite'}"])
    return r.exit_code, r.output


def test_intact_chain_passes(tmp_path: Path) -> None:
    _store(tmp_path)
    code, out = _verify_cli(tmp_path)
    assert code == 0 and "6 rows" in out


@pytest.mark.parametrize(
    ("tamper", "bad_id", "what"),
    [
        (update(AuditEvent).where(AuditEvent.id == 3).values(payload='{"i":99}'), 3, "edited"),
        (update(AuditEvent).where(AuditEvent.id == 2).values(actor="someone-else"), 2, "edited"),
        (delete(AuditEvent).where(AuditEvent.id == 4), 4, "deleted"),
        (delete(AuditEvent).where(AuditEvent.id == 6), 6, "tail deleted"),
    ],
)
def test_tampering_is_detected(tmp_path: Path, tamper: object, bad_id: int, what: str) -> None:
    store = _store(tmp_path)
    with store.session() as s:
        s.execute(tamper)  # type: ignore[call-overload]
    v = audit.verify(store)
    assert not v.ok and v.bad_id == bad_id and what in v.problem
    code, out = _verify_cli(tmp_path)
    assert code == 1 and f"row {bad_id}" in out


def test_rehashing_one_row_still_breaks_the_link(tmp_path: Path) -> None:
    """An attacker who edits a row and recomputes its hash breaks the next row's prev_hash."""
    store = _store(tmp_path)
    with store.session() as s:
        row = s.get(AuditEvent, 3)
        assert row is not None
        row.payload = '{"i":42}'
        row.hash = audit.row_hash(row.id, row.ts, row.actor, row.action, row.payload, row.prev_hash)
    v = audit.verify(store)
    assert not v.ok and v.bad_id == 4 and "prev_hash" in v.problem


def test_writer_batches_and_flushes(tmp_path: Path) -> None:
    store = _store(tmp_path, 0)
    writer = audit.AuditWriter(store)
    for i in range(300):
        writer.submit("key:x", "answer", {"i": i})
    writer.flush()
    writer.close()
    v = audit.verify(store)
    assert v.ok and v.rows == 300
