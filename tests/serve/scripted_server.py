"""A gateway answering with one scripted reply, as a separate process (a stand-in vLLM replica to kill -9).

python -m tests.serve.scripted_server DB_PATH PORT REPLY [FIRST_DELAY_S]
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from kefu.answer.engines.scripted import Reply, ScriptedEngine
from kefu.config import load_config
from kefu.serve.app import create_app


def main(argv: list[str]) -> None:
    db, port, reply = argv[0], int(argv[1]), argv[2]
    delay = float(argv[3]) if len(argv) > 3 else 0.0
    cfg = load_config(None, [f"serve.db_url=sqlite:///{db}", "serve.rate_limit_per_minute=100000"])
    cfg.root = Path(db).parent
    app = create_app(cfg, ScriptedEngine(default=Reply.text(reply, first_delay=delay)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
