"""Per-key rate limits: a fixed one-minute window, in-process by default or shared through Redis."""

from __future__ import annotations

import time
from typing import Any


class RateLimiter:
    """`hit(key_id, limit)` -> seconds to wait (0 when allowed). Counts live in Redis when a client is given."""

    def __init__(self, redis: Any | None = None, prefix: str = "kefu:", window_s: int = 60) -> None:
        self.redis, self.prefix, self.window_s = redis, prefix, window_s
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key_id: str, limit: int) -> int:
        now = time.time()
        window = int(now // self.window_s)
        retry_after = max(1, int((window + 1) * self.window_s - now + 0.999))
        count = await self._incr(key_id, window)
        return 0 if count <= limit else retry_after

    async def _incr(self, key_id: str, window: int) -> int:
        if self.redis is not None:
            rkey = f"{self.prefix}rl:{key_id}:{window}"
            pipe = self.redis.pipeline()
            pipe.incr(rkey)
            pipe.expire(rkey, self.window_s + 5)
            count, _ = await pipe.execute()
            return int(count)
        if len(self._counts) > 50_000:  # old windows are never read again
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
        self._counts[(key_id, window)] = self._counts.get((key_id, window), 0) + 1
        return self._counts[(key_id, window)]
