"""Cleaning: pure per-record filters plus a Cleaner that counts every dropped record by reason.

Reasons, checked in this order (a record is counted once, under the first that applies):
  empty_answer      an assistant turn (or chosen/rejected) is blank, or there is no answer at all
  same_answer       preference pairs whose chosen and rejected answers normalise to the same text
  garbled           mojibake: replacement characters, private-use or CJK-compatibility characters, UTF-8 read as
                    Latin-1/cp1252 ("ä½ å¥½", "Ã¤Â"), or the GBK classics 锟斤拷 / 烫烫烫
  junk              ads and spam: 加微信/加v/微信号 + an ID, 代购, 刷单, 兼职, QR-code lures, several URLs or little
                    but a URL, a character repeated 10+ times or a short unit repeated 6+ times
  too_short         the (last) answer has fewer than clean.min_chars characters
  too_long          the whole text has more than clean.max_chars characters, or more than clean.max_tokens tokens
  exact_duplicate   same normalised text as an earlier record (NFKC, lowercase, whitespace and punctuation removed)
  near_duplicate    MinHash near-duplicate of an earlier record (see NearDuplicateIndex)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

from kefu.config import CleanConfig
from kefu.data.schema import Conversation, Preference

Item = TypeVar("Item", Conversation, Preference)
CountTokens = Callable[[str], int]

# What each reason means, in the words `kefu data check` prints.
REASONS = {
    "empty_answer": "an answer is empty",
    "same_answer": "chosen and rejected are the same answer",
    "garbled": "garbled text (mojibake)",
    "junk": "looks like an ad, spam or keyboard mashing",
    "too_short": "the answer is shorter than data.clean.min_chars",
    "too_long": "longer than data.clean.max_chars (or max_tokens)",
    "exact_duplicate": "repeats an earlier record",
    "near_duplicate": "nearly repeats an earlier record",
}

# Everything that is not a letter or digit (any script): whitespace, punctuation, symbols, emoji, controls.
_NOT_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """NFKC, lowercase, with whitespace, punctuation and symbols removed: the key for exact dedup."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


# --------------------------------------------------------------------------- near duplicates
def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast bijection on uint64 that spreads every input bit over the output."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def shingle_hashes(text: str, k: int = 5) -> np.ndarray:
    """Unique 64-bit hashes of the character k-grams of `text` (the whole text when shorter than k)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) == 0:
        return np.zeros(1, dtype=np.uint64)
    k = min(k, len(codes))
    h = np.zeros(len(codes) - k + 1, dtype=np.uint64)
    for i in range(k):  # polynomial hash of each window; uint64 arithmetic wraps, which is what we want
        h = h * np.uint64(1_000_003) + codes[i : len(codes) - k + 1 + i]
    return np.unique(_mix(h))


class NearDuplicateIndex:
    """MinHash + LSH banding over character 5-gram shingles of normalised text.

    Each text gets `num_perm` (128) min-hashes: hash function i is mix(x XOR seed_i), seed_i drawn from the seeded
    generator and mix the splitmix64 finaliser, so each acts as an independent random permutation. The share of
    equal min-hashes between two texts estimates the Jaccard similarity of their shingle sets (std. error about 0.03
    near 0.85). Signatures are cut into bands of r rows; texts sharing any whole band become candidates, and a
    candidate counts as a near-duplicate when its estimated Jaccard >= threshold. r is the largest of 16/8/4/2 whose
    banding threshold (1/b)^(1/r) lies at least 0.1 below `threshold`, so true near-duplicates are almost never
    missed (for 0.85: 16 bands of 8 rows, candidate threshold 0.71, 99.4% recall at Jaccard 0.85).
    """

    def __init__(self, threshold: float = 0.85, num_perm: int = 128, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.threshold = threshold
        self.seeds = rng.integers(0, np.iinfo(np.uint64).max, size=num_perm, dtype=np.uint64, endpoint=True)
        self.rows = next((r for r in (16, 8, 4, 2) if (r / num_perm) ** (1 / r) <= threshold - 0.1), 1)
        self.band_coeffs = rng.integers(1, np.iinfo(np.uint64).max, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.signatures: list[np.ndarray] = []

    def signature(self, text: str) -> np.ndarray:
        x = shingle_hashes(normalize(text))
        return _mix(x[:, None] ^ self.seeds[None, :]).min(axis=0)

    def _bands(self, sig: np.ndarray) -> list[tuple[int, int]]:
        """(band number, hash of the band's rows): one bucket key per band."""
        bands = sig[: len(sig) // self.rows * self.rows].reshape(-1, self.rows)
        return list(enumerate((bands * self.band_coeffs).sum(axis=1).tolist()))

    def matches(self, sig: np.ndarray) -> list[int]:
        """Ids of indexed texts whose estimated Jaccard with `sig` reaches the threshold."""
        candidates = sorted({j for band in self._bands(sig) for j in self.buckets.get(band, ())})
        if not candidates:
            return []
        agree = (np.stack([self.signatures[j] for j in candidates]) == sig).mean(axis=1)
        return [j for j, a in zip(candidates, agree.tolist(), strict=True) if a >= self.threshold]

    def add(self, sig: np.ndarray) -> int:
        idx = len(self.signatures)
        self.signatures.append(sig)
        for band in self._bands(sig):
            self.buckets[band].append(idx)
        return idx


def near_duplicate_clusters(texts: list[str], threshold: float = 0.85, seed: int = 0) -> list[int]:
    """A cluster id per text: texts linked by any chain of near-duplicate pairs share one (union-find)."""
    index = NearDuplicateIndex(threshold, seed=seed)
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, text in enumerate(texts):
        sig = index.signature(text)
        for j in index.matches(sig):
            parent[find(i)] = find(j)
        index.add(sig)
    return [find(i) for i in range(len(texts))]


# --------------------------------------------------------------------------- junk and garbled text
_AD = re.compile(
    r"加\s*(微信|微|v|vx|薇|威|q|qq)(?![a-z])|微信号|v信|代购|刷单|兼职|日赚|日结|扫码(加|领|进)|二维码.{0,6}(加|领|进群)|加群",
    re.IGNORECASE,
)
_WECHAT_ID = re.compile(r"(微信|vx|wx|weixin|wechat)\s*[:：号]\s*[a-z][-_a-z0-9]{5,19}", re.IGNORECASE)
_URL = re.compile(r"(https?://|www\.)[^\s，。]+", re.IGNORECASE)
_REPEAT_CHAR = re.compile(r"([^\s\-=_*~.·—])\1{9,}")
_REPEAT_UNIT = re.compile(r"(\S{2,6}?)\1{5,}")
_LATIN1_MOJIBAKE = re.compile(
    r"[\u00c2-\u00ef][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u2122]"
)
_GBK_MOJIBAKE = ("锟斤拷", "烫烫烫", "屯屯屯")


def is_junk(text: str) -> bool:
    """Ads, contact-harvesting spam, link dumps and keyboard mashing."""
    if _AD.search(text) or _WECHAT_ID.search(text):
        return True
    urls = _URL.findall(text)
    if len(urls) >= 2 or (urls and len(normalize(_URL.sub("", text))) < 8):
        return True
    return bool(_REPEAT_CHAR.search(text) or _REPEAT_UNIT.search(text))


def _odd_char(ch: str) -> bool:
    cp = ord(ch)
    return cp == 0xFFFD or 0xE000 <= cp <= 0xF8FF or 0xF900 <= cp <= 0xFAFF or 0x3300 <= cp <= 0x33FF


def is_garbled(text: str) -> bool:
    """Text that went through a wrong decode somewhere: see the module docstring."""
    if not text:
        return False
    odd = sum(1 for ch in text if _odd_char(ch))
    if odd >= 3 or odd / len(text) > 0.02:
        return True
    if len(_LATIN1_MOJIBAKE.findall(text)) >= 2:
        return True
    return any(m in text for m in _GBK_MOJIBAKE)


# --------------------------------------------------------------------------- per-record filters
def strip_turns(conv: Conversation) -> Conversation:
    """Trim whitespace around every message and drop a trailing unanswered user turn."""
    turns = [t.model_copy(update={"content": t.content.strip()}) for t in conv.turns]
    if len(turns) > 1 and turns[-1].role == "user":
        turns.pop()
    return conv.model_copy(update={"turns": turns})


def _answers(item: Conversation | Preference) -> list[str]:
    if isinstance(item, Preference):
        return [item.chosen, item.rejected]
    return [t.said() for t in item.turns if t.role == "assistant"]  # a turn that only calls tools is not empty


def drop_reason(
    item: Conversation | Preference, cfg: CleanConfig, count_tokens: CountTokens | None = None
) -> str | None:
    """The first per-record reason to drop `item`, or None to keep it (duplicates are the Cleaner's job)."""
    answers = _answers(item)
    if not answers or any(not a.strip() for a in answers):
        return "empty_answer"
    if isinstance(item, Preference) and normalize(item.chosen) == normalize(item.rejected):
        return "same_answer"
    text = item.text()
    if cfg.drop_junk and is_garbled(text):
        return "garbled"
    if cfg.drop_junk and is_junk(text):
        return "junk"
    if len(answers[0 if isinstance(item, Preference) else -1].strip()) < cfg.min_chars:
        return "too_short"
    if len(text) > cfg.max_chars:
        return "too_long"
    if cfg.max_tokens is not None and count_tokens is not None and count_tokens(text) > cfg.max_tokens:
        return "too_long"
    return None


class Cleaner:
    """Applies the filters in order and counts drops by reason, overall and per source (meta['source'])."""

    def __init__(self, cfg: CleanConfig, count_tokens: CountTokens | None = None, seed: int = 0) -> None:
        self.cfg = cfg
        self.count_tokens = count_tokens
        self.dropped: Counter[str] = Counter()
        self.dropped_by_source: dict[str, Counter[str]] = defaultdict(Counter)
        self._seen: set[bytes] = set()
        self._near = NearDuplicateIndex(cfg.near_threshold, seed=seed)

    def _drop(self, item: Conversation | Preference, reason: str) -> None:
        self.dropped[reason] += 1
        self.dropped_by_source[str(item.meta.get("source", "?"))][reason] += 1

    def _duplicate(self, text: str) -> str | None:
        if self.cfg.dedup == "none":
            return None
        key = hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()
        if key in self._seen:
            return "exact_duplicate"
        self._seen.add(key)
        if self.cfg.dedup == "near":
            sig = self._near.signature(text)
            if self._near.matches(sig):
                return "near_duplicate"
            self._near.add(sig)
        return None

    def reason(self, item: Conversation | Preference) -> str | None:
        """Why `item` would be dropped (duplicates counted against the items seen so far), or None to keep it."""
        if isinstance(item, Conversation):
            item = strip_turns(item)
        return drop_reason(item, self.cfg, self.count_tokens) or self._duplicate(item.text())

    def keep(self, item: Item) -> Item | None:
        """The cleaned item, or None (and the reason counted) when it is dropped."""
        if isinstance(item, Conversation):
            item = strip_turns(item)  # type: ignore[assignment]  # mypy cannot narrow a constrained TypeVar
        reason = drop_reason(item, self.cfg, self.count_tokens) or self._duplicate(item.text())
        if reason is not None:
            self._drop(item, reason)
            return None
        return item

    def clean(self, items: Iterable[Item]) -> list[Item]:
        return [kept for item in items if (kept := self.keep(item)) is not None]
