"""kill -9 during an ingest must leave the previous version active and the SQLite file intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kefu.config import KefuConfig
from kefu.rag.index import ingest, open_store, run_versions
from kefu.rag.retrieve import Retriever
from kefu.rag.store import SQLiteStore

# The child ingests with a progress callback that announces each phase and then stalls, so the parent can kill it
# at a known point: "embed" = while embedding, "write" = inside the open write transaction, before COMMIT.
CHILD = textwrap.dedent(
    """
    import sys, time
    from kefu.config import load_config
    from kefu.rag.index import ingest

    def progress(phase, done, total):
        print(f"PHASE {phase} {done}/{total}", flush=True)
        if phase == sys.argv[2]:
            time.sleep(60)

    ingest(load_config(sys.argv[1]), on_progress=progress)
    print("DONE", flush=True)
    """
)


@pytest.mark.parametrize("phase", ["embed", "write"])
def test_kill_9_during_ingest_keeps_previous_version(ingested: KefuConfig, phase: str) -> None:
    p = ingested.resolve("kb/returns.md")
    p.write_text(p.read_text(encoding="utf-8") + "\n## 新条款\n\n这是第二版才有的新条款。\n", encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ingested.root / "kefu.yaml"), phase],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(f"PHASE {phase}"):
            break
    else:
        pytest.fail(f"child never reached the {phase} phase (exit {child.wait()})")
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    store = open_store(ingested)
    assert isinstance(store, SQLiteStore)
    assert store.integrity_check() == "ok"
    assert store.active_version() == 1
    assert [v.id for v in run_versions(ingested)] == [1]
    r = Retriever(ingested, store=store)
    assert all("第二版" not in h.text for h in r.search("第二版的新条款", k=5))
    # The next ingest completes normally and sees the new text.
    assert ingest(ingested, store=store).version == 2
    assert "第二版" in r.search("第二版才有的新条款", k=1)[0].text
    store.close()
