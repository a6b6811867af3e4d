"""Reasoning never reaches a customer: `<think>...</think>` is cut from a stream, whatever the chunking.

A tag split across chunks ("<thi" + "nk>") is held back until it is decided; an unclosed block hides everything
after its opening tag; a stray closing tag is dropped. The output is the same function of the whole text for
every chunking, so the streamed and the non-streamed answer agree.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _held(buf: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of `buf` that could still grow into one of `tags`."""
    for k in range(max(len(t) for t in tags) - 1, 0, -1):
        tail = buf[-k:]
        if len(buf) >= k and any(t.startswith(tail) for t in tags):
            return k
    return 0


class ThinkFilter:
    """Feed raw model text, get the visible part. `inside=True` when the prompt already opened a block."""

    def __init__(self, inside: bool = False) -> None:
        self.inside = inside
        self.seen = inside  # whether any reasoning was cut (the 'think' hit)
        self._buf = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        out: list[str] = []
        while self._buf:
            if self.inside:
                i = self._buf.find(CLOSE)
                if i < 0:
                    self._buf = self._buf[len(self._buf) - _held(self._buf, (CLOSE,)) :]
                    break
                self._buf, self.inside = self._buf[i + len(CLOSE) :], False
                continue
            i, j = self._buf.find(OPEN), self._buf.find(CLOSE)
            cut = min(k for k in (i, j) if k >= 0) if max(i, j) >= 0 else -1
            if cut < 0:
                keep = _held(self._buf, (OPEN, CLOSE))
                out.append(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep :]
                break
            out.append(self._buf[:cut])
            self.seen = True
            is_open = cut == i
            self._buf = self._buf[cut + len(OPEN if is_open else CLOSE) :]
            self.inside = is_open
        return "".join(out)

    def finish(self) -> str:
        """What is left: a held partial tag is plain text after all; an unclosed block stays hidden."""
        rest, self._buf = ("" if self.inside else self._buf), ""
        return rest
