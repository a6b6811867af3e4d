"""PostgreSQL adapter of `KBStore` (kb.db: postgresql://user@host:5432/db, tables in schema kb.db_schema).

For shops that already run PostgreSQL and want the KB next to their orders, with several serving hosts reading
one store. Same semantics as the SQLite store: a version and the active pointer are written in one transaction
(serialised between concurrent ingests by an advisory lock), so readers never see half a version.

Vectors are stored as `real[]` (float4[]) and searched exactly in numpy after the active version is loaded once,
like the SQLite store. This works on any PostgreSQL without extensions; pgvector's `vector` type and HNSW index
would only pay off for far larger KBs than a shop's (exact numpy search over 20k x 384 takes ~2 ms), and the
pgvector extension is not installed on our test server, so the adapter does not depend on it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from kefu.errors import KefuError
from kefu.rag.lexical import LexicalIndex
from kefu.rag.store import (
    WRITE_BATCH,
    IndexData,
    NewVersion,
    OnWritten,
    VersionInfo,
    chunk_from_row,
    now_iso,
    versions_to_prune,
)

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.kb_versions (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at TEXT NOT NULL,
  embedder TEXT NOT NULL,
  dim INTEGER NOT NULL,
  n_chunks INTEGER NOT NULL,
  sources TEXT NOT NULL,
  note TEXT NOT NULL,
  bm25 BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.kb_chunks (
  version_id BIGINT NOT NULL REFERENCES {s}.kb_versions(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  chunk_id TEXT NOT NULL,
  source TEXT NOT NULL,
  heading TEXT NOT NULL,
  position INTEGER NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  text_hash TEXT NOT NULL,
  vector REAL[] NOT NULL,
  PRIMARY KEY (version_id, idx)
);
CREATE INDEX IF NOT EXISTS kb_chunks_hash ON {s}.kb_chunks(text_hash);
CREATE TABLE IF NOT EXISTS {s}.kb_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class PgStore:
    """KBStore on PostgreSQL through psycopg 3."""

    def __init__(self, url: str, schema: str = "kefu_kb") -> None:
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise KefuError(
                "kb.db is a PostgreSQL URL but psycopg is not installed (pip install 'kefu[postgres]')"
            ) from None
        self._sql = sql
        self.schema = schema
        try:
            self._conn = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as e:
            raise KefuError(f"kb.db: cannot connect to PostgreSQL: {e}") from None
        self._lock = threading.Lock()
        with self._lock, self._conn.transaction():
            # Concurrent first runs would race on CREATE ... IF NOT EXISTS; the advisory lock serialises them.
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(self._q(stmt))

    def _q(self, template: str) -> Any:
        return self._sql.SQL(template).format(s=self._sql.Identifier(self.schema))

    def _rows(self, template: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(self._q(template), tuple(args)).fetchall()

    def active_version(self) -> int | None:
        rows = self._rows("SELECT value FROM {s}.kb_state WHERE key = 'active'")
        return int(rows[0][0]) if rows else None

    def versions(self) -> list[VersionInfo]:
        active = self.active_version()
        rows = self._rows(
            "SELECT id, created_at, embedder, n_chunks, sources, note FROM {s}.kb_versions ORDER BY id DESC"
        )
        return [VersionInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[0] == active) for r in rows]

    def known_vectors(self, embedder: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._rows(
            "SELECT DISTINCT ON (c.text_hash) c.text_hash, c.vector FROM {s}.kb_chunks c "
            "JOIN {s}.kb_versions v ON v.id = c.version_id WHERE v.embedder = %s AND c.text_hash = ANY(%s)",
            (embedder, sorted(set(hashes))),
        )
        return {h: np.asarray(vec, dtype=np.float32) for h, vec in rows}

    def publish(self, new: NewVersion, keep: int, on_written: OnWritten | None = None) -> int:
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema + ":publish",))
            version = self._insert_version(new, on_written)
            self._set_active(version)
            ids = [r[0] for r in self._conn.execute(self._q("SELECT id FROM {s}.kb_versions ORDER BY id DESC"))]
            old = versions_to_prune(ids, version, keep)
            if old:  # chunks go with their version (ON DELETE CASCADE)
                self._conn.execute(self._q("DELETE FROM {s}.kb_versions WHERE id = ANY(%s)"), (old,))
        return version

    def _insert_version(self, new: NewVersion, on_written: OnWritten | None) -> int:
        row = self._conn.execute(
            self._q(
                "INSERT INTO {s}.kb_versions(created_at, embedder, dim, n_chunks, sources, note, bm25) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"
            ),
            (now_iso(), new.embedder, int(new.vectors.shape[1]), len(new.chunks), json.dumps(list(new.sources)),
             new.note, new.bm25),
        ).fetchone()  # fmt: skip
        version = int(row[0]) if row else 0
        insert = self._q("INSERT INTO {s}.kb_chunks VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
        with self._conn.cursor() as cur:
            for start in range(0, len(new.chunks), WRITE_BATCH):
                rows = [
                    (version, i, c.chunk_id, c.source, json.dumps(c.heading, ensure_ascii=False), c.position, c.kind,
                     c.text, c.text_hash, new.vectors[i].tolist())
                    for i, c in enumerate(new.chunks[start : start + WRITE_BATCH], start)
                ]  # fmt: skip
                cur.executemany(insert, rows)
                if on_written is not None:
                    on_written(start + len(rows))
        return version

    def _set_active(self, version: int) -> None:
        self._conn.execute(
            self._q(
                "INSERT INTO {s}.kb_state(key, value) VALUES ('active', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            (str(version),),
        )

    def activate(self, version: int) -> None:
        with self._lock, self._conn.transaction():
            exists = self._conn.execute(self._q("SELECT 1 FROM {s}.kb_versions WHERE id = %s"), (version,)).fetchone()
            if exists is None:
                raise KefuError(f"PostgreSQL {self.schema}: knowledge-base version {version} does not exist")
            self._set_active(version)

    def load(self, version: int) -> IndexData:
        head = self._rows("SELECT dim, bm25 FROM {s}.kb_versions WHERE id = %s", (version,))
        if not head:
            raise KefuError(f"PostgreSQL {self.schema}: knowledge-base version {version} does not exist")
        rows = self._rows(
            "SELECT source, heading, position, kind, text, vector FROM {s}.kb_chunks "
            "WHERE version_id = %s ORDER BY idx",
            (version,),
        )
        chunks = [chunk_from_row(*r[:5]) for r in rows]
        matrix = np.asarray([r[5] for r in rows], dtype=np.float32).reshape(len(rows), head[0][0])
        return IndexData(version, chunks, matrix, LexicalIndex.from_bytes(bytes(head[0][1])))

    def drop(self) -> None:
        """Remove the schema and everything in it (tests, or starting over)."""
        with self._lock:
            self._conn.execute(self._q("DROP SCHEMA IF EXISTS {s} CASCADE"))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
