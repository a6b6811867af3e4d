"""`kefu data synth`: grounded conversations from the KB, RAFT prompts as serving builds them, teacher option."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kefu.config import KefuConfig, load_config
from kefu.data.formats import read_records
from kefu.data.persona import no_match_note
from kefu.rag.chunk import Chunk
from kefu.rag.context import HEADER
from kefu.rag.facts import (
    Fact,
    cloze_questions,
    extract_facts,
    fact_questions,
    numbers,
    rule_questions,
    statement,
    ungrounded,
)
from kefu.rag.index import find_sources, ingest, read_chunks
from kefu.rag.synth import parse_pairs, run_synth, synthesize

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples"


@pytest.fixture(scope="module")
def shop2(tmp_path_factory: pytest.TempPathFactory) -> KefuConfig:
    """Shop 2's documents (a subset, to keep the embedding short), ingested."""
    tmp = tmp_path_factory.mktemp("synth")
    sets = [f"kb.db={tmp}/kb.sqlite", "kb.sources=[kb/returns.md,kb/shipping.md,kb/damaged.md,kb/en/returns.md]"]
    cfg = load_config(SAMPLES / "shop2" / "kefu.yaml", sets)
    ingest(cfg)
    return cfg


def _chunk_text(cfg: KefuConfig, chunk_id: str) -> str:
    return next(c.text for c in read_chunks(cfg, find_sources(cfg)) if c.chunk_id == chunk_id)


def test_facts_and_their_hard_questions() -> None:
    chunk = Chunk(
        "kb/s.md", ("发货", "发货时间"), 0, "每天 14:30 之前付款的订单当天发出；\n- 签收后 72 小时内反馈。\n欢迎光临"
    )
    facts = extract_facts([chunk])
    assert [f.text for f in facts] == ["每天 14:30 之前付款的订单当天发出。", "签收后 72 小时内反馈。"]
    kinds = {q.kind: q.text for q in fact_questions(facts[0])}
    assert kinds["indirect"] == "我15点多付的款，今天还能发吗"
    bait = fact_questions(facts[1])[1]
    assert bait.kind == "bait" and "216小时" in bait.text
    assert ungrounded("72 小时内，上限 20 元[1]", chunk.text, "[1]") == {"20"}


def test_rule_questions_ask_what_the_rule_decides_and_about_each_listed_thing() -> None:
    chunk = Chunk("kb/s.md", ("政策", "售后"), 0, "x")
    pays = Fact("寄回运费由本店承担，最高 15 元。", chunk, "zh")
    assert [q.kind for q in rule_questions(pays)] == ["who_pays", "how_much"]
    listed = Fact("以下商品不支持退货：拆封的电池、定制商品、12 号特价品。", chunk, "zh")
    assert [q.text for q in rule_questions(listed)] == ["拆封的电池，售后可以吗？", "定制商品，售后可以吗？"]
    per_thing = Fact("杯子、水壶：保修 1 年。", chunk, "zh")
    items = [q.text for q in rule_questions(per_thing) if q.kind == "item"]
    assert items == ["杯子的售后是怎样的？", "水壶的售后是怎样的？"]
    assert [q.kind for q in rule_questions(Fact("Refunds arrive within 5 days.", chunk, "en"))] == ["how_long"]


def test_cloze_questions_ask_for_the_rules_own_number_in_its_own_words() -> None:
    chunk = Chunk("kb/s.md", ("售后", "退款"), 0, "x")

    def asked(text: str, lang: str = "zh") -> list[str]:
        return [q.text for q in cloze_questions(Fact(text, chunk, lang))]

    assert asked("银行卡 5 个工作日内到账。") == ["银行卡多久到账？"]
    assert asked("订单实付满 168 元包邮，不满 168 元收取运费 10 元。") == [
        "订单实付满多少钱包邮？", "订单实付满168元包邮，不满多少钱收取运费10元？",
        "订单实付满168元包邮，不满168元收取运费多少钱？",
    ]  # fmt: skip
    assert asked("每天 14:30 之前付款的订单当天发出。") == ["每天几点之前付款的订单当天发出？"]
    assert asked("人工客服在线时间：每天 8:30-20:30。") == ["人工客服在线时间每天几点到几点？"]
    assert asked("租赁订单不能使用优惠券。") == ["租赁订单能使用优惠券吗？"]
    assert asked("信用卡分期 3 期免息（实付满 500 元）。") == ["信用卡分期几期免息？"]  # the aside's number not asked
    assert asked("例如 5 月 1 日签收，最晚 5 月 12 日前申请。") == []
    assert asked("Orders paid before 14:30 ship the same day.", "en") == [
        "Orders paid before what time ship the same day?"
    ]
    assert asked("Refunds reach bank cards within 5 business days.", "en") == [
        "Refunds reach bank cards within how many business days?"
    ]


def test_records_are_grounded_cited_and_keep_their_chunk(shop2: KefuConfig) -> None:
    convs, report = synthesize(shop2)
    assert report.records == len(convs) > 60 and report.generator == "templates"
    kinds = report.by_kind
    assert kinds["indirect"] and kinds["bait"] and kinds["typo"] and kinds["unanswerable"] == 10
    for c in convs:
        q, a = c.turns[0].content, c.turns[1].content
        assert (c.system is not None and HEADER in c.system) or not c.meta["excerpts"]
        if not c.meta["excerpts"]:  # the relevance gate closed: the prompt says what serving says then
            assert c.system is not None and c.system.endswith(no_match_note(shop2.persona))
        n = c.meta["right_excerpt"]
        if c.meta["kind"] in ("unanswerable", "no_excerpt"):
            assert "参考资料里没有找到" in a or "don't answer this" in a, (q, a)
            continue
        assert f"[{n}]" in a and f"[{n}] 来源 source: {c.meta['chunk_source']}" in (c.system or "")
        assert not ungrounded(a, c.meta["chunk_text"], shop2.persona.sign_off + f"[{n}]"), a
        assert (c.meta["lang"] == "en") == a.startswith("Hello"), a
    baits = [c for c in convs if c.meta["kind"] == "bait"]
    # the rule, cited, and no refusal: any fixed refusal phrase leaked into ordinary answers
    for c in baits:
        stated, _, after = c.turns[1].content.partition(f"[{c.meta['right_excerpt']}]")
        assert c.meta["fact"].rstrip("。.") in stated and "没法答应" not in after and "can't promise" not in after
    assert baits
    withheld = [c for c in convs if c.meta["kind"] == "no_excerpt"]
    assert withheld and all(c.meta["chunk_id"] not in c.meta["excerpts"] for c in withheld)
    # "the excerpts do not say" only where no shown excerpt states the rule (its numbers) in other words
    for c in withheld:
        shown = " ".join(_chunk_text(shop2, i) for i in c.meta["excerpts"])
        assert not numbers(c.meta["fact"]) or not numbers(c.meta["fact"]) <= numbers(shown), c.meta["fact"]
    assert kinds["cloze"] > 20


def test_synth_file_reads_back_as_a_data_source(shop2: KefuConfig, tmp_path: Path) -> None:
    written, report = run_synth(shop2, str(tmp_path / "synth.jsonl"))
    records = list(read_records(tmp_path / "synth.jsonl"))
    assert written == len(records) == report.records
    assert all(r.meta["source"] == "synth.jsonl" and "kind" in r.meta for r in records)
    assert sum("chunk_id" in r.meta for r in records) > 50


def test_kefu_data_prepare_adds_synthesised_records(shop2: KefuConfig, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kefu.cli import app

    sets = [f"kb.db={shop2.kb.db}", f"kb.sources={json.dumps(shop2.kb.sources)}", f"data.output_dir={tmp_path}/out"]
    args = ["data", "prepare", "-c", str(SAMPLES / "shop2" / "kefu.yaml")] + [x for s in sets for x in ("--set", s)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    sft = [json.loads(line) for line in (tmp_path / "out" / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report["synth"] > 60 and sum(r["meta"]["source"] == "synth" for r in sft) >= report["synth"] - 10
    identity = [r for r in sft if r["meta"]["source"] == "persona"]
    assert len(identity) == report["identity"]
    # identity answers are learnt under the prompt serving builds for them: excerpts, or the no-match note
    notes = [r for r in identity if r["system"].endswith(no_match_note(shop2.persona))]
    assert notes and all(HEADER in r["system"] for r in identity if r not in notes)


class _Teacher(BaseHTTPRequestHandler):
    """A real HTTP server speaking the OpenAI chat API: one grounded pair, one with an invented number."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        excerpt = body["messages"][0]["content"]
        good = {"lang": "zh", "question": "东西寄回去邮费谁出呀", "answer": "无理由退货的寄回运费由山岚户外承担。"}
        invented = {"lang": "zh", "question": "退货运费谁承担，几次？", "answer": "运费由山岚户外承担，限99次。"}
        pairs = [good, invented]
        content = json.dumps(pairs if "退货运费" in excerpt else [], ensure_ascii=False)
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": "teacher",
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": f"好的：\n{content}"}}]}  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def teacher_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Teacher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_teacher_answers_are_checked_against_their_chunk(shop2: KefuConfig, teacher_url: str) -> None:
    cfg = shop2.model_copy(deep=True)
    cfg.data.synth.teacher_url, cfg.data.synth.teacher_model = teacher_url, "teacher"
    cfg.data.synth.handoff_questions, cfg.data.synth.drop_right_excerpt = False, 0.0
    convs, report = synthesize(cfg)
    assert report.generator == "teacher" and report.dropped["number not in source: 99"] >= 1
    # a pair whose right excerpt retrieval misses becomes a handoff, as serving would need
    assert convs and {c.meta["kind"] for c in convs} <= {"teacher", "no_excerpt"}
    assert any("山岚户外承担" in c.turns[1].content for c in convs)


def test_parse_pairs_skips_malformed_items() -> None:
    assert parse_pairs('[{"question": "q", "answer": "a"}, {"question": ""}, 3]') == [("zh", "q", "a")]
    assert parse_pairs("no json here") == []


def test_fact_of_a_section_without_rules_is_skipped() -> None:
    assert extract_facts([Chunk("kb/a.md", ("关于我们",), 0, "我们是一家小店。欢迎光临。")]) == []
    assert Fact("x", Chunk("kb/a.md", ("二、退货运费",), 0, "x"), "zh").topic == "退货运费"


def test_key_sentences_records_answer_from_the_sentences_shown(shop2: KefuConfig) -> None:
    cfg = shop2.model_copy(update={"kb": shop2.kb.model_copy(update={"key_sentences": 3})})
    convs, report = synthesize(cfg)
    grounded = [c for c in convs if c.meta.get("right_excerpt")]
    assert len(grounded) > 40 and report.dropped["its rule cut from the right excerpt (kb.key_sentences)"] > 0
    for c in grounded:
        system = c.system or ""
        shown = system[system.index(f"[{c.meta['right_excerpt']}] 来源") :].split("\n\n")[0]
        assert numbers(c.meta["fact"]) <= numbers(shown), (c.meta["fact"], shown)
        assert shown.count("\n> ") <= 3  # at most three sentences in all, so at most three under this one
        kept = [statement(line[2:]).rstrip("。.") for line in shown.splitlines() if line.startswith("> ")]
        answer = c.turns[1].content
        # the answer says what the excerpt kept, the rule among it (not the rule alone: a model taught one sentence
        # copied one, often the wrong one)
        assert kept and all(k in answer for k in kept), (kept, answer)


def test_the_retrain_job_prepares_what_kefu_data_prepare_does(shop2: KefuConfig, tmp_path: Path) -> None:
    """The admin console's retrain job and `kefu cycle` prepare through the same function as the CLI: a shop learnt
    from its documents keeps its KB conversations, and its identity answers their served prompt, when retrained."""
    from typer.testing import CliRunner

    from kefu.cli import app
    from kefu.flywheel.job import prepare

    sets = [f"kb.db={shop2.kb.db}", f"kb.sources={json.dumps(shop2.kb.sources)}"]
    args = ["data", "prepare", "-c", str(SAMPLES / "shop2" / "kefu.yaml"), "--set", f"data.output_dir={tmp_path}/cli"]
    assert CliRunner().invoke(app, args + [x for s in sets for x in ("--set", s)]).exit_code == 0
    prepare(load_config(SAMPLES / "shop2" / "kefu.yaml", [*sets, f"data.output_dir={tmp_path}/job"]))
    cli, job = ((tmp_path / d / "sft.jsonl").read_text(encoding="utf-8") for d in ("cli", "job"))
    assert cli == job and '"source": "synth"' in job
