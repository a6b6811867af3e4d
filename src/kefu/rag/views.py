"""What `kefu kb search / versions` print: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table

from kefu.config import KefuConfig
from kefu.rag.retrieve import Hit, Mode, Retriever
from kefu.rag.store import VersionInfo


def run_search(cfg: KefuConfig, query: str, k: int | None = None, mode: Mode = "hybrid") -> list[Hit]:
    """`kefu kb search`: one query against the active version."""
    retriever = Retriever(cfg)
    try:
        return retriever.search(query, k, mode)
    finally:
        retriever.close()


def _rank(r: int | None) -> str:
    return "-" if r is None else str(r)


def _score(s: float | None) -> str:
    return "-" if s is None else f"{s:.3f}"


def hits_table(hits: Sequence[Hit]) -> Table:
    table = Table(title=f"{len(hits)} hits (version {hits[0].version})" if hits else "no hits")
    for col in ("#", "fused", "dense (rank)", "bm25 (rank)", "source", "heading", "text"):
        table.add_column(col, overflow="fold")
    for n, h in enumerate(hits, 1):
        text = " ".join(h.text.split())
        table.add_row(
            str(n),
            f"{h.score:.4f}",
            f"{_score(h.dense_score)} ({_rank(h.dense_rank)})",
            f"{_score(h.bm25_score)} ({_rank(h.bm25_rank)})",
            h.source,
            h.heading_str,
            text if len(text) <= 80 else text[:79] + "…",
        )
    return table


def hits_json(query: str, hits: Sequence[Hit]) -> str:
    return json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False, indent=2)


def versions_table(versions: Sequence[VersionInfo]) -> Table:
    table = Table(title="knowledge-base versions (* = active)")
    for col in ("", "version", "created (UTC)", "chunks", "sources", "embedder", "note"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            "*" if v.active else "", str(v.id), v.created_at, str(v.n_chunks), str(len(v.sources)), v.embedder, v.note
        )
    return table
