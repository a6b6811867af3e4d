"""kb.key_sentences: the excerpts cut to the sentences that answer the question, alike in serving and training."""

from __future__ import annotations

from kefu.answer.knowledge import KnowledgeBase
from kefu.config import KefuConfig
from kefu.data.schema import Conversation, Turn
from kefu.rag.context import build_rag_sft, format_context
from kefu.rag.hit import Hit
from kefu.rag.retrieve import Retriever, prefer_language


def _retriever(cfg: KefuConfig, n: int | None) -> Retriever:
    return Retriever(cfg.model_copy(update={"kb": cfg.kb.model_copy(update={"key_sentences": n})}))


def test_focus_keeps_the_answering_sentences_under_their_excerpt(ingested: KefuConfig) -> None:
    whole, cut = _retriever(ingested, None), _retriever(ingested, 2)
    question = "质量问题多少天内可以退换？"
    hits = whole.retrieve(question)
    assert whole.focus(question, hits) == hits  # null: whole excerpts
    focused = cut.focus(question, hits)
    sentences = [s for h in focused for s in h.text.splitlines()]
    assert len(sentences) == 2 and any("质量问题 15 天内可以退换" in s for s in sentences), sentences
    for f in focused:  # each kept excerpt is one of the hits, its text a subset of its sentences, in their order
        h = next(h for h in hits if h.chunk_id == f.chunk_id)
        kept = f.text.splitlines()
        assert [s for s in kept if s in h.text] == kept and (f.source, f.heading) == (h.source, h.heading)
        assert sorted(kept, key=h.text.index) == kept
    assert [h.chunk_id for h in focused] == [h.chunk_id for h in hits if h.chunk_id in {f.chunk_id for f in focused}]
    assert cut.focus(question, hits) == focused  # the sentence vectors come from the cache the second time
    whole.close()
    cut.close()


def test_serving_and_training_prompts_are_cut_alike(ingested: KefuConfig) -> None:
    cfg = ingested.model_copy(update={"kb": ingested.kb.model_copy(update={"key_sentences": 2})})
    question = "质量问题多少天内可以退换？"
    ctx = KnowledgeBase(cfg).lookup(question, [])
    r = Retriever(cfg)
    expected = format_context(r.focus(question, r.retrieve(question)))
    assert ctx.relevant and ctx.text == expected
    assert ctx.dropped == 0  # counts excerpts dropped for carrying an injection (audited), not the ones cut here
    assert len(ctx.citations) == len(ctx.excerpts) == expected.count(" 来源 source: ")
    conv = Conversation(turns=[Turn(role="user", content=question), Turn(role="assistant", content="15 天内。")])
    (trained,) = build_rag_sft(cfg, [conv])
    assert trained.system is not None and expected in trained.system
    r.close()


def test_warm_embeds_every_sentence_once_before_questions(ingested: KefuConfig) -> None:
    whole, cut = _retriever(ingested, None), _retriever(ingested, 2)
    assert whole.warm() == 0  # whole excerpts: no sentence is ever ranked
    n = cut.warm()
    assert n > 10 and cut.warm() == 0  # all of them the first time, none again
    calls: list[int] = []
    embed = cut._sentences.embed
    cut._sentences.embed = lambda texts: calls.append(len(texts)) or embed(texts)  # type: ignore[method-assign]
    question = "质量问题多少天内可以退换？"
    assert len(cut.focus(question, cut.retrieve(question))) >= 1 and calls == []  # the question embeds no sentence
    KnowledgeBase(ingested.model_copy(update={"kb": cut.kb})).warm()  # through the pipeline's KB: no error
    whole.close()
    cut.close()


def _hit(n: int, text: str) -> Hit:
    return Hit(f"c{n}", "kb/x.md", (), n, text, "text", 1.0 / n, None, None, None, None, 1)


def test_chunks_in_the_question_language_come_first() -> None:
    zh1, en1, zh2, en2 = (
        _hit(1, "新疆、西藏运费 22 元。"),
        _hit(2, "Xinjiang: 22 yuan."),
        _hit(3, "包邮门槛 168 元。"),
        _hit(4, "Free shipping from 168 yuan."),
    )
    ranked = [zh1, en1, zh2, en2]
    assert prefer_language("Is shipping free to Xinjiang?", ranked, 2) == [en1, en2]
    assert prefer_language("新疆包邮吗", ranked, 3) == [zh1, zh2, en1]
    only_zh = [zh1, zh2]  # nothing in English: the other language's best, in rank order
    assert prefer_language("Is shipping free?", only_zh, 2) == only_zh
