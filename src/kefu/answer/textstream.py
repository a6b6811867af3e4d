"""Incremental text processing of a streamed answer: stop sequences (the output guard buffers its own sentences)."""

from __future__ import annotations


class StopFilter:
    """Cuts the stream at the first stop sequence, even when it arrives split across chunks.

    Text that could be the beginning of a stop sequence is held back until it is known not to be one,
    so a stop sequence never reaches the client.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buf = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Text safe to emit now; sets `stopped` when a stop sequence was found (the rest is dropped)."""
        if self.stopped:
            return ""
        self.buf += text
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf, self.stopped = self.buf[: min(hits)], "", True
            return out
        keep = self._held()
        out, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep :]
        return out

    def _held(self) -> int:
        """Length of the longest buffer suffix that is a proper prefix of some stop sequence."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), best, -1):
                if self.buf.endswith(s[:k]):
                    best = k
                    break
        return best

    def flush(self) -> str:
        out, self.buf = ("" if self.stopped else self.buf), ""
        return out
