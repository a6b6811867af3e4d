"""`kefu data synth`: grounded training conversations from the shop's own knowledge base.

A shop with only policy pages has no chat logs to learn from. For every policy statement (kefu.rag.facts) this
writes customer questions and answers that state the statement in the persona's style:
  - default: deterministic templates over the extracted facts (plain, colloquial, typo, indirect, bait); the
    answer is the statement itself, cited (with kb.key_sentences: the sentences of its excerpt the cut kept, the
    statement among them); a bait gets the same: the rule is the answer to asking for more. A fixed refusal
    taught with it leaked into ordinary answers wherever it stood: put first ("抱歉，这个我不能答应。"), it opened
    "能…吗" questions and often ended them; put after the rule ("超出这个范围的我没法答应"), it was copied onto 6-8
    of 76 ordinary shop-2 answers (bench/RESULTS.md, sessions 8-14);
  - data.synth.teacher_url: any OpenAI-compatible model writes varied questions and answers from the excerpt.
Retrieval-aware (RAFT, data.synth.raft): the system prompt carries the excerpts retrieval finds for the question,
formatted exactly as build_rag_sft does for train.retrieval_context, distractors included; the answer cites the
right excerpt's number. A share of records (data.synth.drop_right_excerpt), and every question whose right excerpt
retrieval misses, get the excerpts without it, and the target says the excerpts do not answer it and hands off;
so do questions the KB cannot answer. Every record keeps its source chunk in meta; an answer with a number that is
not in its source chunk (or the persona's own text) is dropped and counted.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kefu.config import KefuConfig
from kefu.data.persona import handoff_sentence, styled, system_prompt, system_text
from kefu.data.schema import Conversation, Turn
from kefu.errors import KefuError
from kefu.rag.context import format_context
from kefu.rag.facts import (
    Fact,
    cite,
    cloze_questions,
    extract_facts,
    fact_questions,
    numbers,
    rule_questions,
    statement,
    topic_questions,
    ungrounded,
)
from kefu.rag.index import find_sources, read_chunks
from kefu.rag.retrieve import Hit, Retriever

if TYPE_CHECKING:
    from rich.progress import Progress

    from kefu.data.prepare import PrepareReport

# Questions a shop's documents do not answer: the target is a polite handoff, never a guess.
UNANSWERABLE = {
    "zh": ("你们老板叫什么名字", "你们有线下实体店吗", "明天会下雨吗", "你们公司有多少员工", "能帮我写一份工作总结吗",
           "你们仓库具体在哪条街"),
    "en": ("who owns the shop", "do you have a physical store I can visit", "will it rain tomorrow",
           "can you help me write a cover letter"),
}  # fmt: skip
_SECTION_FACTS = 3
_STYLE_ROOM = 60  # greeting, "[n]" and a sign-off around a section's rules


@dataclass
class SynthReport:
    records: int = 0
    facts: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    generator: str = "templates"


def _handoff_body(cfg: KefuConfig, lang: str) -> str:
    if lang == "zh":
        return f"抱歉，参考资料里没有找到这个问题的答案，我不能随便回答。{handoff_sentence(cfg.persona, lang)}"
    return f"Sorry, the reference excerpts don't answer this, so I won't guess. {handoff_sentence(cfg.persona, lang)}"


def _excerpt_answer(shown: str, lang: str) -> str:
    """What the right excerpt says once kb.key_sentences cut it (the rule and the 0-2 sentences kept beside it), as
    the answer. Answering with the rule alone taught the model to copy one sentence, often not the one that answers:
    the first excerpt's kept sentences hold a shop-2 case's facts in 0.64 of its cases, the best single sentence in
    0.46 (sample shop: 0.43 vs 0.20)."""
    return ("" if lang == "zh" else " ").join(statement(s) for s in shown.splitlines() if s.strip())


def _shown(fact: Fact, hits: list[Hit]) -> bool:
    """Whether the shown excerpts state the fact: all its numbers, or (a rule without numbers) its very words."""
    shown = "".join(h.text for h in hits)
    if numbers(fact.text):
        return not ungrounded(fact.text, shown)
    return re.sub(r"\s+", "", fact.text.rstrip("。.")) in re.sub(r"\s+", "", shown)


def _section_fact(facts: list[Fact], max_chars: int) -> Fact:
    """A section's first rules as one fact (a question about the section is answered with all of them), as many
    as fit the persona's length limit with room for greeting, citation and sign-off."""
    joiner = "" if facts[0].lang == "zh" else " "
    text = facts[0].text
    for f in facts[1:_SECTION_FACTS]:
        if len(text) + len(f.text) > max_chars - _STYLE_ROOM:
            break
        text += joiner + f.text
    return Fact(text, facts[0].chunk, facts[0].lang)


class Synthesizer:
    """Writes the records of one config; `retriever` is needed for RAFT prompts."""

    def __init__(self, cfg: KefuConfig, retriever: Retriever | None) -> None:
        self.cfg = cfg
        self.opts = cfg.data.synth
        self.retriever = retriever
        self.rng = random.Random(cfg.data.seed)
        self.base = system_prompt(cfg.persona)
        self.report = SynthReport(generator="teacher" if self.opts.teacher_url else "templates")
        self.asked: set[str] = set()
        persona = cfg.persona
        self.allowed = " ".join([persona.greeting, persona.sign_off, persona.hours, persona.hours_en,
                                 persona.handoff, persona.handoff_en])  # fmt: skip

    def _context(self, question: str, right: str | None) -> tuple[str | None, int | None, list[Hit], bool]:
        """(system prompt, number of the right excerpt or None, hits shown, whether retrieval found the right
        excerpt before kb.key_sentences cut it), composed as serving composes it: the excerpts when the relevance
        gate (kb.min_score) lets them through, else none and the no-match note."""
        if self.retriever is None:
            return None, None, [], False
        hits = self.retriever.retrieve(question)
        if right is not None and self.rng.random() < self.opts.drop_right_excerpt:
            hits = [h for h in hits if h.chunk_id != right]
        relevant = self.retriever.relevant(hits)
        found = relevant and any(h.chunk_id == right for h in hits)
        hits = self.retriever.focus(question, hits) if relevant else []
        n = next((i for i, h in enumerate(hits, 1) if h.chunk_id == right), None)
        return system_text(self.base, format_context(hits), self.cfg.persona, kb_searched=True), n, hits, found

    def record(self, fact: Fact | None, question: str, body: str | None, kind: str, lang: str) -> Conversation | None:
        """One conversation; body None means "the excerpts do not answer it" (handoff)."""
        system, n, hits, found = self._context(question, fact.chunk.chunk_id if fact else None)
        if fact is not None and found and not (n and _shown(fact, [hits[n - 1]])):
            # kb.key_sentences kept sentences of the right excerpt, not this rule: the prompt does not answer it,
            # yet the excerpt was found; neither target would be true to what retrieval found, so no record.
            self.report.dropped["its rule cut from the right excerpt (kb.key_sentences)"] += 1
            return None
        grounded = fact is not None and body is not None and (n is not None or self.retriever is None)
        if fact is not None and not grounded and _shown(fact, hits):
            # Another excerpt states it too (an overlapping chunk, the same page in the other language): "the
            # excerpts do not say" would be false, and teaching it made the model refuse answers in front of it.
            self.report.dropped["right excerpt missed, its rule shown by another"] += 1
            return None
        if grounded and fact is not None and body is not None:
            if n and kind != "teacher" and self.cfg.kb.key_sentences is not None:
                body = _excerpt_answer(hits[n - 1].text, lang)
            text = cite(body, n) if n and f"[{n}]" not in body else body
            if bad := ungrounded(text, fact.chunk.text, self.allowed + f" [{n}]"):
                self.report.dropped[f"number not in source: {sorted(bad)[0]}"] += 1
                return None
        else:
            text, kind = _handoff_body(self.cfg, lang), ("no_excerpt" if fact else "unanswerable")
        answer = styled(self.cfg.persona, text, lang)
        meta: dict[str, Any] = {"source": "synth", "kind": kind, "lang": lang, "generator": self.report.generator,
                                "excerpts": [h.chunk_id for h in hits], "right_excerpt": n}  # fmt: skip
        if fact is not None:
            c = fact.chunk
            meta |= {"chunk_id": c.chunk_id, "chunk_source": c.source, "heading": list(c.heading),
                     "chunk_text": c.text, "fact": fact.text}  # fmt: skip
        self.report.by_kind[kind] += 1
        turns = [Turn(role="user", content=question), Turn(role="assistant", content=answer)]
        return Conversation(system=system, turns=turns, meta=meta)

    def from_templates(self, facts: list[Fact]) -> Iterator[Conversation | None]:
        """One section's records: questions about the section (all its rules) and about each rule alone."""
        section = _section_fact(facts, self.cfg.persona.max_chars)
        asked = topic_questions(section.topic, section.lang)
        self.rng.shuffle(asked)
        pairs = [(section, q) for q in asked[: self.opts.questions_per_fact]]
        pairs += [(f, q) for f in facts for q in fact_questions(f) + rule_questions(f) + cloze_questions(f)]
        for fact, q in pairs:
            if q.text not in self.asked:
                self.asked.add(q.text)
                yield self.record(fact, q.text, fact.text, q.kind, fact.lang)

    def from_teacher(self, fact: Fact, teacher: Teacher) -> Iterator[Conversation | None]:
        for lang, question, answer in teacher.pairs(fact, self.opts.questions_per_fact):
            yield self.record(fact, question, answer, "teacher", lang)

    def handoffs(self) -> Iterator[Conversation | None]:
        for lang, questions in UNANSWERABLE.items():
            for q in questions:
                yield self.record(None, q, None, "unanswerable", lang)


class Teacher:
    """An OpenAI-compatible chat endpoint asked for JSON question/answer pairs grounded in one excerpt."""

    def __init__(self, cfg: KefuConfig) -> None:
        from openai import OpenAI

        opts = cfg.data.synth
        if not opts.teacher_model:
            raise KefuError("data.synth.teacher_model: name the model served at data.synth.teacher_url")
        key = os.environ.get(opts.teacher_api_key_env, "none")
        self.client = OpenAI(base_url=opts.teacher_url, api_key=key, timeout=120.0, max_retries=1)
        self.model = opts.teacher_model
        self.persona = cfg.persona

    def prompt(self, fact: Fact, n: int) -> str:
        p = self.persona
        return (
            f"你在为网店“{p.shop}”的客服助手{p.name}编写训练数据。"
            f"下面是店铺资料的一段摘录：\n{fact.chunk.index_text}\n\n"
            f"请针对其中这条规定：“{fact.text}”，写{n}个顾客可能的提问（口语、错别字、间接问法，至少一个英文提问）"
            "和对应的回答。回答只能使用摘录里的事实和数字，英文提问用英文回答。只输出JSON数组，每项形如"
            '{"lang": "zh或en", "question": "...", "answer": "..."}。'
        )

    def pairs(self, fact: Fact, n: int) -> list[tuple[str, str, str]]:
        from openai import OpenAIError

        try:
            reply = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": self.prompt(fact, n)}], temperature=0.7
            )
        except OpenAIError as e:
            raise KefuError(f"data.synth.teacher_url: the teacher failed: {e}") from None
        return parse_pairs(reply.choices[0].message.content or "")


def parse_pairs(text: str) -> list[tuple[str, str, str]]:
    """(lang, question, answer) triples out of a teacher's reply; anything malformed is skipped."""
    match = re.search(r"\[.*\]", text, re.DOTALL)
    try:
        items = json.loads(match.group(0)) if match else []
    except json.JSONDecodeError:
        return []
    out = []
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict) and all(isinstance(it.get(k), str) and it[k].strip() for k in ("question", "answer")):
            lang = it.get("lang") if it.get("lang") in ("zh", "en") else "zh"
            out.append((str(lang), it["question"].strip(), it["answer"].strip()))
    return out


def synthesize(cfg: KefuConfig, retriever: Retriever | None = None) -> tuple[list[Conversation], SynthReport]:
    """All synthesised conversations of the shop's KB, seeded."""
    chunks = read_chunks(cfg, find_sources(cfg))
    own = retriever is None and cfg.data.synth.raft
    if own:
        retriever = Retriever(cfg)
        retriever.index()  # fail now, with the "run kefu kb ingest" message, if nothing is ingested
    try:
        synth = Synthesizer(cfg, retriever if cfg.data.synth.raft else None)
        facts = extract_facts(chunks)
        synth.report.facts = len(facts)
        teacher = Teacher(cfg) if cfg.data.synth.teacher_url else None
        out: list[Conversation] = []
        for section in _by_chunk(facts):
            made = (
                (c for f in section for c in synth.from_teacher(f, teacher))
                if teacher
                else synth.from_templates(section)
            )
            out += [c for c in made if c is not None]
        if cfg.data.synth.handoff_questions:
            out += [c for c in synth.handoffs() if c is not None]
    finally:
        if own and retriever is not None:
            retriever.close()
    synth.report.records = len(out)
    return out, synth.report


def _by_chunk(facts: list[Fact]) -> list[list[Fact]]:
    groups: dict[str, list[Fact]] = {}
    for f in facts:
        groups.setdefault(f.chunk.chunk_id, []).append(f)
    return list(groups.values())


def to_openai(conv: Conversation) -> dict[str, Any]:
    """A record in the OpenAI messages format, meta kept, so `data.sources` can read a synth file back."""
    messages = [{"role": "system", "content": conv.system}] if conv.system else []
    messages += [{"role": t.role, "content": t.content} for t in conv.turns]
    return {"messages": messages, "meta": conv.meta}


def prepare_with_kb(cfg: KefuConfig, progress: Progress | None = None) -> PrepareReport:
    """`kefu data prepare`: the configured sources and the identity data, plus (data.synth.enabled) the KB's
    synthesised conversations, the identity answers then learnt under the prompt serving builds (the no-match
    note); kefu.data.prepare cannot do this itself, data stays below rag."""
    from kefu.data.prepare import check_shop, run_prepare
    from kefu.rag.context import build_rag_sft

    if not cfg.data.synth.enabled:
        return run_prepare(cfg, progress)
    check_shop(cfg)  # say what is missing before the slower synthesis
    synthesized = synthesize(cfg)[0]
    ground = functools.partial(build_rag_sft, cfg) if cfg.data.synth.raft else None
    return run_prepare(cfg, progress, synthesized, ground)


def run_synth(cfg: KefuConfig, out: str | None = None) -> tuple[int, SynthReport]:
    """Synthesise and write the records (JSONL, temp-then-rename); returns (written, report)."""
    from kefu.io import write_jsonl

    convs, report = synthesize(cfg)
    path = cfg.resolve(out or "data/synth.jsonl")
    return write_jsonl(path, (to_openai(c) for c in convs)), report
