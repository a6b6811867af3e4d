"""The retrieved excerpts cut to the sentences that answer the question (kb.key_sentences).

Whole excerpts put ~430 tokens of policy in front of a small model (the sample shop's median), and a 0.5B model
then copied a sentence of the right excerpt, often the wrong one (bench/RESULTS.md, shop 2). Ranking every sentence
of the shown excerpts against the question, by the embedder and by BM25 over those sentences, and keeping the best
few gives the model less to choose from and the CPU less to prefill. Each excerpt keeps its own chosen sentences in
document order and its source and heading; an excerpt left with none is not shown.

Serving (kefu.answer.knowledge) and the retrieval-aware training data (kefu.rag.synth, kefu.rag.context) both call
`focus`, so the model is trained on the prompts it is served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from kefu.rag.chunk import split_sentences
from kefu.rag.facts import lang_of
from kefu.rag.glossary import Glossary
from kefu.rag.hit import Hit
from kefu.rag.lexical import LexicalIndex

_RRF_K = 10  # a few dozen sentences per question: a small constant lets the top ranks count
_CACHE = 20_000  # sentence vectors kept: a shop's KB has a few thousand sentences, all asked about again and again
MIN_CHARS = 4  # a bare "-" or "1." left by a list is not a sentence


class SentenceVectors:
    """Passage vectors of KB sentences, memoised (the KB changes rarely, the same sentences come back all day)."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self.embed = embed
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def warm(self, sentences: Sequence[str], batch: int = 64) -> int:
        """Embed sentences ahead of need, in batches, up to what the memo keeps; returns how many were new."""
        todo = self._missing(list(dict.fromkeys(sentences))[:_CACHE])
        for i in range(0, len(todo), batch):
            self._add(todo[i : i + batch])
        return len(todo)

    def __call__(self, sentences: Sequence[str]) -> np.ndarray:
        if missing := self._missing(sentences):
            self._add(missing)
        with self._lock:
            return np.stack([self._cache[s] for s in sentences])

    def _missing(self, sentences: Sequence[str]) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(s for s in sentences if s not in self._cache))

    def _add(self, sentences: list[str]) -> None:
        fresh = self.embed(sentences)
        with self._lock:
            self._cache.update(zip(sentences, fresh, strict=True))
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)


def sentences_of(text: str) -> list[str]:
    """The sentences `focus` ranks in one excerpt, as they are embedded."""
    return [s.strip() for s in split_sentences(text) if len(s.strip()) >= MIN_CHARS]


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(len(scores))
    return ranks


def best_sentences(
    query_vec: np.ndarray, query: str, sentences: list[str], vectors: SentenceVectors, glossary: Glossary | None, n: int
) -> set[int]:
    """Indexes of the n sentences ranked best by dense and BM25 ranks fused (reciprocal rank), a sentence in the
    question's language getting one more top vote: a small model answers an English question from an English
    sentence, and does not translate a Chinese one (English cases' facts in the top sentence: shop 2 0.25 -> 0.42,
    the sample shop 0.06 -> 0.12; all cases unchanged or better, bench/RESULTS.md)."""
    dense = vectors(sentences) @ query_vec
    lexical = LexicalIndex.build(sentences)
    lexical.glossary = glossary
    fused = 1.0 / (_RRF_K + _ranks(dense)) + 1.0 / (_RRF_K + _ranks(lexical.scores(query)))
    asked = lang_of(query)
    fused += np.array([lang_of(s) == asked for s in sentences], dtype=np.float64) / _RRF_K
    return set(np.argsort(-fused, kind="stable")[:n].tolist())


def focus(
    query: str,
    query_vec: np.ndarray,
    hits: Sequence[Hit],
    vectors: SentenceVectors,
    glossary: Glossary | None,
    n: int,
) -> list[Hit]:
    """`hits` with each text cut to its sentences among the n best for `query`; hits left without one dropped."""
    parts = [sentences_of(h.text) for h in hits]
    flat = [s for p in parts for s in p]
    if len(flat) <= n:
        return list(hits)
    keep = best_sentences(query_vec, query, flat, vectors, glossary, n)
    out, i = [], 0
    for hit, sentences in zip(hits, parts, strict=True):
        chosen = [s for j, s in enumerate(sentences, i) if j in keep]
        i += len(sentences)
        if chosen:
            out.append(replace(hit, text="\n".join(chosen)))
    return out
