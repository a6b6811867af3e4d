"""Greedy decoding of an exported ONNX decoder with onnxruntime, needing only numpy and onnxruntime.

kefu's export copies this file next to model.onnx, so the ONNX folder runs on a machine without kefu or torch:

    python onnx_greedy.py model.onnx 151644 872 ...   # prompt token ids -> generated ids

The graph takes `input_ids` [batch, seq] and returns `logits` [batch, seq, vocab] over the whole sequence
(no KV cache), so each step re-reads the full prefix: simple and exact, O(n^2) in the answer length.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np


def open_session(path: str):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def next_logits(session, ids: list[int]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Logits (float64) of the token after `ids`."""
    out = session.run(["logits"], {"input_ids": np.asarray([ids], dtype=np.int64)})[0]
    return np.asarray(out[0, -1], dtype=np.float64)


def greedy(session, prompt: list[int], max_new_tokens: int, stop_ids: Iterable[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """Generated token ids (the stop token included when reached)."""
    stops, ids, new = set(stop_ids), list(prompt), []
    for _ in range(max_new_tokens):
        token = int(np.argmax(next_logits(session, ids)))
        new.append(token)
        ids.append(token)
        if token in stops:
            break
    return new


if __name__ == "__main__":
    print(greedy(open_session(sys.argv[1]), [int(x) for x in sys.argv[2:]], 64, []))
