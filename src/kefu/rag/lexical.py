"""Lexical retrieval: BM25 (bm25s) over tokens cut by script, jieba words for Chinese runs and lower-cased words
for Latin text, so mixed sentences like "SF顺丰 加12元" index both halves. Queries are first rewritten by the
glossary (kefu.rag.glossary). The index serialises to one blob.
"""

from __future__ import annotations

import io
import json
import logging
import re
from functools import lru_cache

import bm25s
import numpy as np

from kefu.rag.glossary import Glossary

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:\.\d+)?")
_IS_CJK = re.compile(rf"[{_CJK}]")
# Function words that match almost every chunk; dropping them keeps BM25 on the content words.
_STOP_ZH = (
    "的 了 吗 呢 吧 啊 呀 哦 么 嘛 是 在 和 与 或 及 就 都 也 还 又 我 我们 你 您 他 她 它 这 那 这个 那个 哪 一下 "
    "请问 请 想 要 会 能 可以 可不可以 能不能 怎么 怎么办 怎样 如何 什么 多少 几 有 没有 个 一个 给 把 被 让 对 从 到"
)
_STOP_EN = (
    "a an the is are was were be been am do does did i me my we our you your it its this that these those to of in on "
    "at for with from by and or if can could would should will how what when where which who why any some there here "
    "have has had not no"
)
STOPWORDS = frozenset(_STOP_ZH.split() + _STOP_EN.split())


@lru_cache(maxsize=1)
def _jieba() -> object:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not for our users
    jieba.initialize()
    return jieba


def _stem(word: str) -> str:
    """Plural-only stemming: 'coupons' finds 'coupon' without the surprises of a full stemmer."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: jieba search-mode words for Chinese runs, stemmed lower-case words and numbers otherwise."""
    jieba = _jieba()
    tokens: list[str] = []
    for run in _RUNS.findall(text):
        if _IS_CJK.match(run):
            tokens += [w for w in jieba.lcut_for_search(run) if w not in STOPWORDS]  # type: ignore[attr-defined]
        else:
            w = run.lower()
            if w not in STOPWORDS:
                tokens.append(_stem(w))
    return tokens


class LexicalIndex:
    """A BM25 index over one version's chunks; `scores(query)` gives one score per chunk (0 = no term matched)."""

    def __init__(self, model: bm25s.BM25, glossary: Glossary | None = None) -> None:
        self.model = model
        self.glossary = glossary

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        model = bm25s.BM25(method="lucene")
        corpus = [tokenize(t) or [""] for t in texts]
        model.index(corpus, show_progress=False)
        return cls(model)

    @property
    def num_docs(self) -> int:
        return int(self.model.scores["num_docs"])

    def scores(self, query: str) -> np.ndarray:
        if self.glossary is not None:
            query = self.glossary.expand(query)
        ids = self.model.get_tokens_ids(tokenize(query))
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self.model.get_scores_from_ids(ids), dtype=np.float32)

    def to_bytes(self) -> bytes:
        m = self.model
        params = {"k1": m.k1, "b": m.b, "delta": m.delta, "method": m.method, "num_docs": self.num_docs}
        buf = io.BytesIO()
        np.savez(
            buf,
            data=m.scores["data"],
            indices=m.scores["indices"],
            indptr=m.scores["indptr"],
            vocab=np.frombuffer(json.dumps(m.vocab_dict, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
            params=np.frombuffer(json.dumps(params).encode("utf-8"), dtype=np.uint8),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> LexicalIndex:
        z = np.load(io.BytesIO(blob), allow_pickle=False)
        params = json.loads(z["params"].tobytes().decode("utf-8"))
        model = bm25s.BM25(k1=params["k1"], b=params["b"], delta=params["delta"], method=params["method"])
        model.scores = {
            "data": z["data"],
            "indices": z["indices"],
            "indptr": z["indptr"],
            "num_docs": params["num_docs"],
        }
        model.vocab_dict = json.loads(z["vocab"].tobytes().decode("utf-8"))
        model.unique_token_ids_set = set(model.vocab_dict.values())
        model.nonoccurrence_array = None  # only BM25L/BM25+ use it; we index with Lucene BM25
        return cls(model)
