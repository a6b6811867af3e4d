"""Hybrid retrieval: exact dense search (numpy) + BM25, fused by reciprocal rank, optionally reranked.

The serving seam is `Retriever.retrieve(query, history, k)`; `kefu.rag.context` turns hits into prompt text and
citations. The active version is checked on every query (one indexed SQLite read) and its matrix is loaded once
and cached by version id, so `kefu kb rollback` or a new ingest takes effect in a running server immediately.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from kefu.config import KefuConfig
from kefu.data.schema import Turn
from kefu.errors import KefuError
from kefu.rag.embed import Embedder
from kefu.rag.facts import lang_of
from kefu.rag.focus import SentenceVectors, focus, sentences_of
from kefu.rag.hit import Hit
from kefu.rag.index import embedder_for, glossary_for, open_store
from kefu.rag.store import IndexData, KBStore

Mode = Literal["hybrid", "dense", "bm25"]
HistoryItem = Turn | Mapping[str, Any]
_QUERY_CACHE = 1024
_HISTORY_CHARS = 120
# A BM25 score of about two informative shared words (Lucene BM25 on shop-sized KBs); see relevant().
LEXICAL_SUPPORT = 2.0  # each earlier turn is cut to this: it gives the topic, the current question gives the rest


def top(scores: np.ndarray, n: int, positive_only: bool = False) -> np.ndarray:
    """Indices of the n highest scores, best first (argpartition: O(N) rather than a full sort)."""
    idx = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if len(idx) > n:
        idx = idx[np.argpartition(-scores[idx], n - 1)[:n]]
    return idx[np.argsort(-scores[idx], kind="stable")]


def rrf(ranked_lists: Sequence[np.ndarray], k: int) -> dict[int, float]:
    """Reciprocal-rank fusion: each list adds 1 / (k + rank) to the documents it ranks."""
    fused: dict[int, float] = {}
    for ranked in ranked_lists:
        for rank, doc in enumerate(ranked.tolist(), 1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return fused


def query_with_history(query: str, history: Sequence[HistoryItem] | None, turns: int) -> str:
    """The current question preceded by the last `turns` earlier user turns, so follow-ups like '那运费呢？' keep
    their topic."""
    if not history or turns == 0:
        return query
    users = [t.content if isinstance(t, Turn) else str(t.get("content", "")) for t in history if _role(t) == "user"]
    users = [u.strip() for u in users if u.strip()]
    if users and users[-1] == query.strip():
        users = users[:-1]  # callers may pass the full message list, current question included
    prev = [u[:_HISTORY_CHARS] for u in users[-turns:]]
    return "\n".join([*prev, query])


def _role(t: HistoryItem) -> str:
    return t.role if isinstance(t, Turn) else str(t.get("role", ""))


class Retriever:
    """Search over the active knowledge-base version; safe to share between serving threads."""

    def __init__(self, cfg: KefuConfig, store: KBStore | None = None, embedder: Embedder | None = None) -> None:
        self.cfg = cfg
        self.kb = cfg.kb
        self.store = store or open_store(cfg, create=False)
        self._embedder = embedder
        self._index: IndexData | None = None
        self._lock = threading.Lock()
        self._qcache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._reranker: Any = None
        self._glossary = glossary_for(cfg)
        self._sentences = SentenceVectors(lambda texts: self.embedder.embed_passages(texts))

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = embedder_for(self.cfg)
        return self._embedder

    def index(self) -> IndexData:
        """The active version, loaded once per version id."""
        active = self.store.active_version()
        if active is None:
            raise KefuError("knowledge base is empty: run `kefu kb ingest` first")
        with self._lock:
            if self._index is None or self._index.version != active:
                self._index = self.store.load(active)
                self._index.lexical.glossary = self._glossary
            return self._index

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector, memoised: customers ask the same questions again and again."""
        with self._lock:
            hit = self._qcache.get(text)
            if hit is not None:
                self._qcache.move_to_end(text)
                return hit
        vec = self.embedder.embed_queries([text])[0]
        with self._lock:
            self._qcache[text] = vec
            while len(self._qcache) > _QUERY_CACHE:
                self._qcache.popitem(last=False)
        return vec

    def search(self, query: str, k: int | None = None, mode: Mode = "hybrid") -> list[Hit]:
        """Top-k chunks for `query` by dense, BM25 or fused ranking."""
        k = k or self.kb.top_k
        if not query.strip():
            return []
        ix = self.index()
        depth = min(len(ix.chunks), max(50, 5 * k))
        # einsum runs single-threaded SIMD: on busy cores OpenBLAS's threaded matvec was 3x slower (memory-bound).
        dense = np.einsum("ij,j->i", ix.matrix, self.embed_query(self._dense_query(query))) if mode != "bm25" else None
        bm25 = ix.lexical.scores(query) if mode != "dense" else None
        lists = []
        if dense is not None:
            lists.append(top(dense, depth))
        if bm25 is not None:
            lists.append(top(bm25, depth, positive_only=True))
        fused = rrf(lists, self.kb.rrf_k)
        order = sorted(fused, key=lambda d: -fused[d])[: max(k, 4 * k if self.kb.reranker else k)]
        ranks = [{int(d): r for r, d in enumerate(lst.tolist(), 1)} for lst in lists]
        dense_ranks = ranks[0] if dense is not None else {}
        bm25_ranks = ranks[-1] if bm25 is not None else {}
        hits = [self._hit(ix, d, fused[d], dense, dense_ranks, bm25, bm25_ranks) for d in order]
        return self._rerank(query, hits)[:k] if self.kb.reranker else hits[:k]

    def _dense_query(self, query: str) -> str:
        glossary = self._glossary  # the one every loaded index's lexical part is given (index())
        return glossary.expand(query, synonyms=False) if self.kb.rewrite_dense and glossary is not None else query

    @staticmethod
    def _hit(
        ix: IndexData,
        d: int,
        score: float,
        dense: np.ndarray | None,
        dense_ranks: dict[int, int],
        bm25: np.ndarray | None,
        bm25_ranks: dict[int, int],
    ) -> Hit:
        c = ix.chunks[d]
        return Hit(
            c.chunk_id, c.source, c.heading, c.position, c.text, c.kind, round(score, 6),
            None if dense is None else round(float(dense[d]), 6), dense_ranks.get(d),
            None if bm25 is None else round(float(bm25[d]), 6), bm25_ranks.get(d), ix.version,
        )  # fmt: skip

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        if self._reranker is None:
            self._reranker = load_reranker(str(self.cfg.resolve(self.kb.reranker or "")))
        pairs = [(query, (h.heading_str + "\n" + h.text).strip()) for h in hits]
        scores = [float(s) for s in self._reranker.predict(pairs)]
        reranked = [replace(h, rerank_score=s) for h, s in zip(hits, scores, strict=True)]
        return sorted(reranked, key=lambda h: -(h.rerank_score or 0.0))

    def retrieve(self, query: str, history: Sequence[HistoryItem] | None = None, k: int | None = None) -> list[Hit]:
        """Hybrid top-k for the current question, using the conversation's recent user turns as context; of the
        top 2k, chunks in the question's language go first (see prefer_language)."""
        k = k or self.kb.top_k
        return prefer_language(query, self.search(query_with_history(query, history, self.kb.history_turns), 2 * k), k)

    def focus(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """The hits cut to the kb.key_sentences sentences that answer `query` best (kefu.rag.focus); all of them
        when that is null."""
        n = self.kb.key_sentences
        if n is None or not hits:
            return list(hits)
        vec = self.embed_query(self._dense_query(query))
        return focus(query, vec, hits, self._sentences, self._glossary, n)

    def warm(self) -> int:
        """Embed the active version's sentences before customers ask (kb.key_sentences): the first question about
        a part of the KB otherwise waits ~0.1-0.25 s for its sentences on 2 cores. Returns how many were embedded."""
        if self.kb.key_sentences is None:
            return 0
        return self._sentences.warm([s for c in self.index().chunks for s in sentences_of(c.text)])

    def relevant(self, hits: Sequence[Hit]) -> bool:
        """Whether the hits can answer the question at all (kb.min_score); when False, say you'll check or hand off."""
        return relevant(hits, self.kb.min_score, self.kb.min_score_lexical)

    def close(self) -> None:
        self.store.close()


def prefer_language(query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
    """The k best hits, those in the question's language first (each group in rank order). A shop whose documents
    come in both languages answers each customer from its own: the same rule in the other language took the slots
    (an English question shown only Chinese shipping rules, "我在乌鲁木齐，多少钱包邮" only the English summary), and
    a small model copies the excerpt it is shown rather than translating it. No hit in that language: unchanged."""
    asked = lang_of(query)
    return sorted(hits, key=lambda h: lang_of(h.text) != asked)[:k]  # stable: rank order within each group


def relevant(hits: Sequence[Hit], min_score: float, min_score_lexical: float | None = None) -> bool:
    """Whether any hit can answer the question. RRF scores are rank-based and always look 'relevant', so absolute
    signals decide: a dense cosine >= min_score, or >= min_score_lexical when the same hit also shares informative
    words with the question (BM25 >= LEXICAL_SUPPORT). BM25-only hits (mode='bm25') count when they match."""
    lexical = min_score if min_score_lexical is None else min_score_lexical
    for h in hits:
        if h.dense_score is None:
            if (h.bm25_score or 0.0) >= LEXICAL_SUPPORT:
                return True
        elif h.dense_score >= min_score or (h.dense_score >= lexical and (h.bm25_score or 0.0) >= LEXICAL_SUPPORT):
            return True
    return False


def load_reranker(path: str) -> Any:
    """A sentence-transformers CrossEncoder from a local folder (kb.reranker)."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        raise KefuError(
            f"kb.reranker: '{path}' needs the sentence-transformers package (pip install sentence-transformers), "
            "or set kb.reranker: null"
        ) from None
    return CrossEncoder(path, device="cpu")
