"""After `kefu redteam` against `kefu serve`: did any planted PII reach the server's log or its store (messages, audit)?

The planted values are the suite's own (deterministic), so a raw phone/ID/card/email from a probe found in the log
file or in any text column of the SQLite store is a leak. Prints the counts and writes JSON.

    python bench/redteam_leakscan.py --log serve.log --db kefu.sqlite --out bench/results/redteam_leakscan.json
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from kefu.io import write_json
from kefu.redteam.probes import all_probes


def planted_values() -> set[str]:
    return {v for p in all_probes() for v in p.planted}


def scan_text(text: str, values: set[str]) -> list[str]:
    return sorted(v for v in values if v in text)


def scan_db(db: Path, values: set[str]) -> dict[str, list[str]]:
    """Every text column of every table of the SQLite store."""
    found: dict[str, list[str]] = {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            rows = conn.execute(f'SELECT * FROM "{t}"').fetchall()
            text = "\n".join(str(c) for row in rows for c in row if isinstance(c, str | bytes))
            if hits := scan_text(text, values):
                found[t] = hits
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("bench/results/redteam_leakscan.json"))
    args = ap.parse_args(argv)
    values = planted_values()
    result: dict[str, Any] = {
        "planted_values": len(values),
        "log_leaks": scan_text(args.log.read_text(encoding="utf-8", errors="replace"), values),
        "store_leaks": scan_db(args.db, values),
    }
    write_json(args.out, result)
    n_store = sum(len(v) for v in result["store_leaks"].values())
    print(f"planted PII values: {len(values)}; found in the log: {len(result['log_leaks'])}; in the store: {n_store}")
    return 1 if result["log_leaks"] or n_store else 0


if __name__ == "__main__":
    sys.exit(main())
