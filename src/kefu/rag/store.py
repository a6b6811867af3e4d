"""Knowledge-base stores: the small interface retrieval needs (`KBStore`) and the embedded SQLite default.

A version is written whole in ONE transaction that also flips the active pointer, so readers see either the old
version or the new one, never half of one, and a crash (even kill -9) mid-ingest leaves the previous version
active: SQLite's WAL simply never commits the partial transaction. Version ids are never reused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from kefu.errors import KefuError
from kefu.rag.chunk import Chunk
from kefu.rag.lexical import LexicalIndex

OnWritten = Callable[[int], None]
WRITE_BATCH = 256


@dataclass(frozen=True)
class NewVersion:
    """What an ingest hands the store: chunks in index order, their vectors and the serialised BM25 index."""

    chunks: Sequence[Chunk]
    vectors: np.ndarray
    bm25: bytes
    embedder: str
    sources: Sequence[str]
    note: str = ""


@dataclass(frozen=True)
class VersionInfo:
    id: int
    created_at: str
    embedder: str
    n_chunks: int
    sources: list[str]
    note: str
    active: bool


@dataclass
class IndexData:
    """One version loaded for search: chunk i is row i of `matrix` and document i of `lexical`."""

    version: int
    chunks: list[Chunk]
    matrix: np.ndarray
    lexical: LexicalIndex


class KBStore(Protocol):
    """The few operations ingest, search and versioning need; SQLiteStore and PgStore implement them."""

    def active_version(self) -> int | None: ...

    def versions(self) -> list[VersionInfo]: ...

    def known_vectors(self, embedder: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def publish(self, new: NewVersion, keep: int, on_written: OnWritten | None = None) -> int: ...

    def activate(self, version: int) -> None: ...

    def load(self, version: int) -> IndexData: ...

    def close(self) -> None: ...


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def chunk_from_row(source: str, heading: str, position: int, kind: str, text: str) -> Chunk:
    return Chunk(source, tuple(json.loads(heading)), position, text, kind)


def versions_to_prune(ids_newest_first: Sequence[int], active: int, keep: int) -> list[int]:
    """Versions beyond the newest `keep`, never the active one."""
    return [v for v in ids_newest_first[keep:] if v != active]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb_versions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at TEXT NOT NULL,
  embedder TEXT NOT NULL,
  dim INTEGER NOT NULL,
  n_chunks INTEGER NOT NULL,
  sources TEXT NOT NULL,
  note TEXT NOT NULL,
  bm25 BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kb_chunks (
  version_id INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  chunk_id TEXT NOT NULL,
  source TEXT NOT NULL,
  heading TEXT NOT NULL,
  position INTEGER NOT NULL,
  kind TEXT NOT NULL,
  text TEXT NOT NULL,
  text_hash TEXT NOT NULL,
  vector BLOB NOT NULL,
  PRIMARY KEY (version_id, idx)
);
CREATE INDEX IF NOT EXISTS kb_chunks_hash ON kb_chunks(text_hash);
CREATE TABLE IF NOT EXISTS kb_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode; vectors are float32 blobs searched exactly in numpy."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise KefuError(f"{self.path}: no knowledge base yet; run `kefu kb ingest` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE where we write.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()  # one connection shared by serving threads
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses no committed data
        self._db.executescript(_SCHEMA)

    def _one(self, sql: str, args: Sequence[object] = ()) -> tuple[object, ...] | None:
        with self._lock:
            row = self._db.execute(sql, tuple(args)).fetchone()
        return tuple(row) if row is not None else None

    def active_version(self) -> int | None:
        row = self._one("SELECT value FROM kb_state WHERE key = 'active'")
        return int(str(row[0])) if row else None

    def versions(self) -> list[VersionInfo]:
        active = self.active_version()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created_at, embedder, n_chunks, sources, note FROM kb_versions ORDER BY id DESC"
            ).fetchall()
        return [VersionInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[0] == active) for r in rows]

    def known_vectors(self, embedder: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = sorted(set(hashes))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            sql = (
                "SELECT c.text_hash, c.vector FROM kb_chunks c JOIN kb_versions v ON v.id = c.version_id "
                f"WHERE v.embedder = ? AND c.text_hash IN ({marks})"
            )
            with self._lock:
                rows = self._db.execute(sql, (embedder, *part)).fetchall()
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def publish(self, new: NewVersion, keep: int, on_written: OnWritten | None = None) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                version = self._insert_version(db, new, on_written)
                db.execute("INSERT OR REPLACE INTO kb_state(key, value) VALUES ('active', ?)", (str(version),))
                ids = [r[0] for r in db.execute("SELECT id FROM kb_versions ORDER BY id DESC")]
                for old in versions_to_prune(ids, version, keep):
                    db.execute("DELETE FROM kb_chunks WHERE version_id = ?", (old,))
                    db.execute("DELETE FROM kb_versions WHERE id = ?", (old,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return version

    @staticmethod
    def _insert_version(db: sqlite3.Connection, new: NewVersion, on_written: OnWritten | None) -> int:
        cur = db.execute(
            "INSERT INTO kb_versions(created_at, embedder, dim, n_chunks, sources, note, bm25) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now_iso(), new.embedder, int(new.vectors.shape[1]), len(new.chunks), json.dumps(list(new.sources)),
             new.note, new.bm25),
        )  # fmt: skip
        version = int(cur.lastrowid or 0)
        vectors = np.ascontiguousarray(new.vectors, dtype=np.float32)
        for start in range(0, len(new.chunks), WRITE_BATCH):
            rows = [
                (version, i, c.chunk_id, c.source, json.dumps(c.heading, ensure_ascii=False), c.position, c.kind,
                 c.text, c.text_hash, vectors[i].tobytes())
                for i, c in enumerate(new.chunks[start : start + WRITE_BATCH], start)
            ]  # fmt: skip
            db.executemany("INSERT INTO kb_chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if on_written is not None:
                on_written(start + len(rows))
        return version

    def activate(self, version: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM kb_versions WHERE id = ?", (version,)).fetchone() is None:
                    raise KefuError(f"{self.path}: knowledge-base version {version} does not exist")
                self._db.execute("INSERT OR REPLACE INTO kb_state(key, value) VALUES ('active', ?)", (str(version),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load(self, version: int) -> IndexData:
        with self._lock:
            head = self._db.execute("SELECT dim, bm25 FROM kb_versions WHERE id = ?", (version,)).fetchone()
            if head is None:
                raise KefuError(f"{self.path}: knowledge-base version {version} does not exist")
            rows = self._db.execute(
                "SELECT source, heading, position, kind, text, vector FROM kb_chunks WHERE version_id = ? ORDER BY idx",
                (version,),
            ).fetchall()
        chunks = [chunk_from_row(*r[:5]) for r in rows]
        # A fresh (aligned, writable) array: frombuffer over the joined blobs is unaligned and slower to scan.
        matrix = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), head[0]).copy()
        return IndexData(version, chunks, matrix, LexicalIndex.from_bytes(head[1]))

    def integrity_check(self) -> str:
        row = self._one("PRAGMA integrity_check")
        return str(row[0]) if row else "no result"

    def close(self) -> None:
        with self._lock:
            self._db.close()
