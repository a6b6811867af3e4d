from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kefu.rag.chunk import chunk_sections, pack, split_sentences
from kefu.rag.readers import DocumentError, Section, read_document, read_html, read_markdown
from tests.rag.kbdocs import FAQ_HTML, PDF_LINES, RETURNS_MD, make_pdf


def test_sentences_end_at_chinese_and_western_punctuation() -> None:
    text = "第一句。第二句！“第三句？”第四句；Fifth one. Price 1.5 yuan! 1. 列表项\n尾"
    assert split_sentences(text) == [
        "第一句。", "第二句！", "“第三句？”", "第四句；", "Fifth one.", " Price 1.5 yuan!", " 1. 列表项\n", "尾",
    ]  # fmt: skip
    assert "".join(split_sentences(text)) == text


def test_pack_breaks_only_at_sentence_ends_and_overlaps_whole_sentences() -> None:
    sentences = [f"第{i}句话讲的是退货政策里的一条规则。" for i in range(12)]
    chunks = pack("".join(sentences), chunk_chars=60, overlap_chars=20)
    assert len(chunks) > 3
    for c in chunks:
        assert c.endswith("。") and len(c) <= 60
        assert all(s in sentences for s in split_sentences(c))  # no sentence was cut
    for a, b in itertools.pairwise(chunks):
        assert split_sentences(a)[-1] == split_sentences(b)[0]  # one whole sentence shared


def test_overlong_sentence_is_cut_after_commas() -> None:
    long = "，".join(["这是一个很长的从句"] * 20) + "。"
    chunks = pack(long, chunk_chars=50, overlap_chars=0)
    assert all(len(c) <= 50 for c in chunks)
    assert all(c.endswith(("，", "。")) for c in chunks)
    assert "".join(chunks) == long


def test_markdown_heading_path_and_positions() -> None:
    sections = read_markdown(RETURNS_MD)
    assert [s.heading for s in sections] == [("退货政策",), ("退货政策", "退货期限"), ("退货政策", "运费谁出")]
    chunks = chunk_sections("kb/returns.md", sections, chunk_chars=40, overlap_chars=0)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    deadline = [c for c in chunks if c.heading == ("退货政策", "退货期限")]
    assert len(deadline) == 2  # split at "！", never across the next heading
    assert deadline[0].text.endswith("无理由退货！")
    assert deadline[0].index_text.startswith("退货政策 > 退货期限\n")


def test_markdown_code_fence_hides_headings_and_levels_pop() -> None:
    md = "# A\n## B\ntext b\n```\n# not a heading\n```\n# C\ntext c\n"
    sections = read_markdown(md)
    assert [s.heading for s in sections] == [("A", "B"), ("C",)]
    assert "# not a heading" in sections[0].text


def test_faq_pairs_stay_whole_even_when_long(tmp_path: Path) -> None:
    answer = "。".join(["这是一条很长的回答"] * 30) + "。"
    (tmp_path / "faq.csv").write_text(f"question,answer\n长问题？,{answer}\n短问题？,短回答。\n", encoding="utf-8")
    chunks = chunk_sections("faq.csv", read_document(tmp_path / "faq.csv"), chunk_chars=50, overlap_chars=10)
    assert len(chunks) == 2
    assert chunks[0].text == f"问：长问题？\n答：{answer}" and chunks[0].kind == "faq"
    assert chunks[0].heading == ("长问题？",)


def test_faq_jsonl_english_and_bad_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "faq.jsonl"
    p.write_text('{"Question": "Can I pay later?", "Answer": "Yes."}\n\n{"question": "x"\n', encoding="utf-8")
    with pytest.raises(DocumentError, match=r"faq\.jsonl:3: not valid JSON"):
        read_document(p)
    p.write_text('{"Question": "Can I pay later?", "Answer": "Yes."}\n', encoding="utf-8")
    assert read_document(p) == [Section(("Can I pay later?",), "Q: Can I pay later?\nA: Yes.", "faq")]


def test_faq_csv_without_answer_column_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "faq.csv"
    p.write_text("q,reply_text\n问,答\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"faq\.csv:1: an FAQ needs 'question' and 'answer'"):
        read_document(p)


def test_gbk_csv_is_decoded(tmp_path: Path) -> None:
    p = tmp_path / "faq.csv"
    p.write_bytes("问题,答案\n运费多少？,满99元包邮。\n".encode("gbk"))
    assert read_document(p)[0].text == "问：运费多少？\n答：满99元包邮。"


def test_html_reader_builds_heading_path_and_skips_scripts() -> None:
    sections = read_html(FAQ_HTML)
    assert [s.heading for s in sections] == [("常见问题", "账号", "密码输错被锁定怎么办？")]
    text = sections[0].text
    assert text.splitlines() == ["密码连续输错 5 次，账号锁定 30 分钟。", "可以改用验证码登录；", "也可以重置密码。"]
    assert "secret" not in text and "color" not in text


def test_pdf_reader_gives_page_sections(tmp_path: Path) -> None:
    make_pdf(tmp_path / "doc.pdf", PDF_LINES)
    sections = read_document(tmp_path / "doc.pdf")
    assert sections == [Section(("p.1",), "\n".join(PDF_LINES))]


def test_broken_pdf_and_unknown_type_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(DocumentError, match=r"bad\.pdf: cannot read PDF"):
        read_document(tmp_path / "bad.pdf")
    (tmp_path / "x.docx").write_bytes(b"")
    with pytest.raises(DocumentError, match=r"unsupported document type '\.docx'"):
        read_document(tmp_path / "x.docx")


def test_chunk_ids_are_stable_and_content_addressed() -> None:
    a = chunk_sections("a.md", [Section(("H",), "同样的文字。")])
    b = chunk_sections("a.md", [Section(("H",), "同样的文字。")])
    c = chunk_sections("a.md", [Section(("H",), "改过的文字。")])
    assert a[0].chunk_id == b[0].chunk_id != c[0].chunk_id
