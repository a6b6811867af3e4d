"""Incremental text processing of a streamed answer: stop sequences (the output guard buffers its own sentences),
and where a bare JSON call opens (kefu.answer.toolcalls.CallSplitter holds and reads it)."""

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


# A bare JSON call: a model that has not learnt its call token writes something else in its place (the trained
# default writes "-offsetof" for <tool_call>) and then the call's JSON. Such a call opens a segment of the answer
# (its start, or after a line or sentence end) with a short run of junk without spaces, then {"name":.
SEGMENT_ENDS = "\n。！？!?."
HOLD, NOT_A_CALL = -1, -2
_JUNK_MAX = 24
_KEY = '"name"'


def segment_end(text: str) -> int:
    """Index just after the first line or sentence end in `text`, or -1."""
    hits = [i for i in (text.find(c) for c in SEGMENT_ENDS) if i >= 0]
    return min(hits) + 1 if hits else -1


def bare_call_start(segment: str, opener: str = "") -> int:
    """Where a bare JSON call opens in a segment of the answer: the index of its "{" when the segment is
    (whitespace,) at most 24 characters of junk without spaces or sentence ends, then {"name":. HOLD while the
    text so far could still become that, NOT_A_CALL once it cannot. Junk holding `opener` (the format's own call
    tag) is not junk: that call is read the usual way."""
    i = len(segment) - len(segment.lstrip())
    j = i
    while j < len(segment) and not segment[j].isspace() and segment[j] not in "{" + SEGMENT_ENDS:
        j += 1
    if j - i > _JUNK_MAX or (opener and opener in segment[i:j]):
        return NOT_A_CALL
    if j == len(segment):
        return HOLD
    if segment[j] != "{":  # junk then a space or a sentence end: words, not a mangled token
        return NOT_A_CALL
    rest = segment[j + 1 :].lstrip()
    if len(rest) <= len(_KEY):
        return HOLD if _KEY.startswith(rest) else NOT_A_CALL
    if not rest.startswith(_KEY):
        return NOT_A_CALL
    after = rest[len(_KEY) :].lstrip()
    if not after:
        return HOLD
    return j if after[0] == ":" else NOT_A_CALL
