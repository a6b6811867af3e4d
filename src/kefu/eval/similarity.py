"""Similarity of an answer to its reference: BLEU-4 and chrF (sacrebleu), ROUGE-L over characters and jieba words.

Chinese has no spaces, so an ASCII tokenizer would see each sentence as one word: BLEU uses sacrebleu's "zh"
tokenizer for Chinese cases and "13a" for English ones (applied here per case, so one corpus score covers both),
and ROUGE-L is reported over characters and over jieba words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh


@cache
def _tokenizers() -> dict[str, Any]:
    return {"zh": TokenizerZh(), "en": Tokenizer13a()}


def bleu_tokenize(text: str, lang: str) -> str:
    """sacrebleu's own tokenisation for the language: 'zh' splits CJK characters, '13a' splits punctuation."""
    return str(_tokenizers()["zh" if lang == "zh" else "en"](text.strip()))


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is noise in a progress display
    return jieba


def words(text: str) -> list[str]:
    """jieba words, lower-cased, without whitespace tokens; works for Chinese, English and a mix."""
    return [w.lower() for w in _jieba().lcut(text) if w.strip()]


def chars(text: str) -> list[str]:
    return [c.lower() for c in text if not c.isspace()]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, bit-parallel (Hyyrö 2004): O(len(b)) big-int operations."""
    masks: dict[str, int] = {}
    for i, sym in enumerate(a):
        masks[sym] = masks.get(sym, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for sym in b:
        u = v & masks.get(sym, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 (beta = 1) between two token sequences."""
    if not hyp or not ref:
        return 0.0
    lcs = lcs_length(ref, hyp)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(hyp), lcs / len(ref)
    return 2 * p * r / (p + r)


def case_similarity(answer: str, reference: str, lang: str) -> dict[str, float]:
    """Sentence-level scores of one answer (BLEU with effective order, so short answers are not all zero)."""
    hyp, ref = bleu_tokenize(answer, lang), bleu_tokenize(reference, lang)
    return {
        "bleu": BLEU(tokenize="none", effective_order=True).sentence_score(hyp, [ref]).score,
        "chrf": CHRF().sentence_score(answer, [reference]).score,
        "rouge_l_char": rouge_l(chars(answer), chars(reference)),
        "rouge_l_word": rouge_l(words(answer), words(reference)),
    }


def corpus_similarity(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Corpus BLEU-4 and chrF (0-100) over all cases, and mean ROUGE-L F1 (0-1) over characters and words."""
    rows = [r for r in rows if r.get("reference")]
    if not rows:
        return {"bleu": None, "chrf": None, "rouge_l_char": None, "rouge_l_word": None, "n": 0}
    hyps = [bleu_tokenize(r["answer"], r["lang"]) for r in rows]
    refs = [bleu_tokenize(r["reference"], r["lang"]) for r in rows]
    return {
        "bleu": BLEU(tokenize="none").corpus_score(hyps, [refs]).score,
        "chrf": CHRF().corpus_score([r["answer"] for r in rows], [[r["reference"] for r in rows]]).score,
        "rouge_l_char": sum(r["similarity"]["rouge_l_char"] for r in rows) / len(rows),
        "rouge_l_word": sum(r["similarity"]["rouge_l_word"] for r in rows) / len(rows),
        "n": len(rows),
    }
