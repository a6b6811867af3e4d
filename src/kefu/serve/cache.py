"""Response cache for frequent questions, keyed on normalised question + model version + KB version.

A version in the key means a new model or knowledge base can never serve an old answer; `invalidate()` also
drops the old entries at once so they do not linger until their TTL.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

_PUNCT_TAIL = re.compile(r"[\s?？!！。.,，~～]+$")
_SPACES = re.compile(r"\s+")


def normalise(question: str) -> str:
    """Same question, same key: width-folded, lower-cased, spaces collapsed, trailing punctuation dropped."""
    q = unicodedata.normalize("NFKC", question).lower().strip()
    return _PUNCT_TAIL.sub("", _SPACES.sub(" ", q))


@dataclass
class Cached:
    text: str
    citations: list[dict[str, Any]]


class ResponseCache:
    def __init__(self, ttl_s: int, redis: Any | None = None, prefix: str = "kefu:") -> None:
        self.ttl_s, self.redis, self.prefix = ttl_s, redis, prefix
        self._local: dict[str, tuple[float, Cached]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def key(self, question: str, model_version: str, kb_version: str) -> str:
        digest = hashlib.sha256(normalise(question).encode("utf-8")).hexdigest()[:32]
        return f"{self.prefix}cache:{model_version}:{kb_version}:{digest}"

    async def get(self, question: str, model_version: str, kb_version: str) -> Cached | None:
        found = await self._get(self.key(question, model_version, kb_version))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    async def _get(self, key: str) -> Cached | None:
        if self.redis is not None:
            raw = await self.redis.get(key)
            return None if raw is None else Cached(**json.loads(raw))
        item = self._local.get(key)
        if item is None or item[0] < time.monotonic():
            self._local.pop(key, None)
            return None
        return item[1]

    async def put(self, question: str, model_version: str, kb_version: str, value: Cached) -> None:
        key = self.key(question, model_version, kb_version)
        if self.redis is not None:
            await self.redis.set(key, json.dumps(value.__dict__, ensure_ascii=False), ex=self.ttl_s)
            return
        if len(self._local) > 10_000:
            now = time.monotonic()
            self._local = {k: v for k, v in self._local.items() if v[0] >= now}
        self._local[key] = (time.monotonic() + self.ttl_s, value)

    async def invalidate(self) -> int:
        """Drop every cached answer (a model or KB version changed); returns how many were dropped."""
        if self.redis is None:
            n, self._local = len(self._local), {}
            return n
        n = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}cache:*", count=500):
            n += await self.redis.delete(key)
        return n

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
