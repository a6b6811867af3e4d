"""Retrieval evaluation: recall@k and MRR of BM25, dense and hybrid search over labelled questions.

A question (JSONL: id, lang, topic, question, labels) is labelled with the places that answer it, each a source
file and an exact heading path, so labels survive re-chunking (every chunk of a section keeps its heading).
Questions with no labels are off-topic: they measure whether `relevant()` (kb.min_score) says "nothing found".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kefu.errors import KefuError
from kefu.rag.chunk import Chunk
from kefu.rag.retrieve import Hit, Mode, Retriever, relevant

Label = tuple[str, tuple[str, ...]]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
MRR_DEPTH = 10


@dataclass(frozen=True)
class Question:
    id: str
    lang: str
    topic: str
    question: str
    labels: tuple[Label, ...]


def load_questions(path: Path) -> list[Question]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            labels = tuple((lb["source"], tuple(lb["heading"])) for lb in r["labels"])
            out.append(Question(r["id"], r["lang"], r["topic"], r["question"], labels))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise KefuError(f"{path}:{n}: bad question record: {e!r}") from None
    return out


def unmatched_labels(questions: Sequence[Question], chunks: Sequence[Chunk]) -> list[str]:
    """Labels that no chunk carries (a renamed heading or file): each would silently count as a miss."""
    present = {(c.source, c.heading) for c in chunks}
    return sorted({f"{q.id}: {s} # {' > '.join(h)}" for q in questions for s, h in q.labels if (s, h) not in present})


def first_match(hits: Sequence[Hit], labels: Sequence[Label]) -> int | None:
    """1-based rank of the first hit from a labelled place, or None."""
    wanted = set(labels)
    return next((n for n, h in enumerate(hits, 1) if (h.source, h.heading) in wanted), None)


def _scores(ranks: Sequence[int | None], ks: Sequence[int]) -> dict[str, float]:
    n = max(len(ranks), 1)
    out = {f"recall@{k}": sum(r is not None and r <= k for r in ranks) / n for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r is not None) / n
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(retriever: Retriever, questions: Sequence[Question], ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Per mode: recall@k and MRR@10 overall and per language; plus relevance-gate accuracy at kb.min_score."""
    on = [q for q in questions if q.labels]
    off = [q for q in questions if not q.labels]
    result: dict[str, Any] = {"n_questions": len(on), "n_off_topic": len(off), "modes": {}, "misses": {}}
    for mode in MODES:
        ranks = [first_match(retriever.search(q.question, MRR_DEPTH, mode), q.labels) for q in on]
        per_lang = {
            lang: _scores([r for r, q in zip(ranks, on, strict=True) if q.lang == lang], ks)
            for lang in sorted({q.lang for q in on})
        }
        result["modes"][mode] = {**_scores(ranks, ks), "by_lang": per_lang}
        result["misses"][mode] = [q.id for r, q in zip(ranks, on, strict=True) if r is None or r > max(ks)]
    result["relevance"] = relevance_check(retriever, on, off)
    return result


def relevance_check(retriever: Retriever, on: Sequence[Question], off: Sequence[Question]) -> dict[str, Any]:
    """How often relevant() is right: on-topic questions should pass, off-topic ones should not; at kb.min_score
    and over a sweep of thresholds, to choose kb.min_score for a knowledge base."""
    on_hits = [retriever.search(q.question) for q in on]
    off_hits = [retriever.search(q.question) for q in off]

    def rates(threshold: float) -> dict[str, float]:
        lexical = min(threshold, retriever.kb.min_score_lexical)
        passed = sum(relevant(h, threshold, lexical) for h in on_hits) / max(len(on_hits), 1)
        rejected = sum(not relevant(h, threshold, lexical) for h in off_hits) / max(len(off_hits), 1)
        return {"min_score": threshold, "on_topic_passed": round(passed, 4), "off_topic_rejected": round(rejected, 4)}

    sweep = [rates(round(t, 2)) for t in np.arange(0.80, 0.901, 0.01)]
    return {**rates(retriever.kb.min_score), "sweep": sweep}
