"""Every reader: formats, containers (JSON array / JSONL / CSV), encodings, and problems with their line numbers."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pytest

from kefu.data import rows
from kefu.data.formats import detect_format, read_records
from kefu.data.rows import Problem
from kefu.data.schema import Conversation, Preference
from kefu.errors import KefuError

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop" / "data"


def jsonl(path: Path, records: list[Any], encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding=encoding)
    return path


def read_all(path: Path, **kw: Any) -> tuple[list[Any], list[str]]:
    problems: list[Problem] = []
    items = list(read_records(path, on_problem=problems.append, **kw))
    return items, [str(p) for p in problems]


def roles(conv: Conversation) -> list[str]:
    return [t.role for t in conv.turns]


def test_alpaca_with_input_history_and_system(tmp_path: Path) -> None:
    rec = {"instruction": "能退吗", "input": "订单 123", "output": "可以", "system": "S", "history": [["在吗", "在的"]]}
    (conv,), problems = read_all(jsonl(tmp_path / "a.jsonl", [rec]))
    assert problems == []
    assert conv.system == "S"
    assert roles(conv) == ["user", "assistant", "user", "assistant"]
    assert conv.turns[2].content == "能退吗\n订单 123"
    assert conv.meta == {"source": "a.jsonl", "line": 1}


def test_context_response_and_cot(tmp_path: Path) -> None:
    (ctx,), _ = read_all(jsonl(tmp_path / "c.jsonl", [{"Context": "运费多少", "Response": "10元"}]))
    assert [t.content for t in ctx.turns] == ["运费多少", "10元"]
    cot = {"Question": "满199减20再用30元券，付多少？", "Complex_CoT": "256-20=236，236-30=206", "Response": "206元"}
    (conv,), _ = read_all(jsonl(tmp_path / "cot.jsonl", [cot]))
    assert conv.turns[1].content == "206元"
    assert conv.turns[1].reasoning == "256-20=236，236-30=206"


def test_sharegpt_roles_and_system(tmp_path: Path) -> None:
    msgs = [
        {"from": "system", "value": "你是客服"},
        {"from": "human", "value": "你好"},
        {"from": "gpt", "value": "您好"},
        {"from": "user", "value": "退货"},
        {"from": "assistant", "value": "七天"},
    ]
    (conv,), problems = read_all(jsonl(tmp_path / "s.jsonl", [{"conversations": msgs}]))
    assert problems == []
    assert conv.system == "你是客服"
    assert roles(conv) == ["user", "assistant", "user", "assistant"]


def test_openai_messages_with_content_parts(tmp_path: Path) -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "hello"}]
    (conv,), _ = read_all(jsonl(tmp_path / "o.jsonl", [{"messages": msgs}]))
    assert [t.content for t in conv.turns] == ["hi", "hello"]


def test_preference_prompt_as_string_or_messages(tmp_path: Path) -> None:
    recs = [
        {"prompt": "能保证明天到吗", "chosen": "无法保证", "rejected": "保证明天到"},
        {
            "prompt": [
                {"role": "user", "content": "在吗"},
                {"role": "assistant", "content": "在"},
                {"role": "user", "content": "退款"},
            ],
            "chosen": [{"role": "assistant", "content": "按政策处理"}],
            "rejected": {"role": "assistant", "content": "马上全退"},
        },
    ]
    items, problems = read_all(jsonl(tmp_path / "p.jsonl", recs))
    assert problems == []
    assert all(isinstance(p, Preference) for p in items)
    assert [t.content for t in items[1].prompt] == ["在吗", "在", "退款"]
    assert (items[1].chosen, items[1].rejected) == ("按政策处理", "马上全退")


def test_csv_aliases_and_named_columns(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text('prompt,response\n"多行\n问题",答案\n怎么退,七天\n', encoding="utf-8")
    items, _ = read_all(plain)
    assert [c.turns[0].content for c in items] == ["多行\n问题", "怎么退"]
    assert [c.meta["line"] for c in items] == [2, 4]
    named = tmp_path / "named.csv"
    named.write_text("q_text,a_text,extra\nhi,hello,x\n", encoding="utf-8")
    (conv,), _ = read_all(named, columns=["q_text", "a_text"])
    assert [t.content for t in conv.turns] == ["hi", "hello"]


def test_json_array_elements_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    recs = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    path.write_text(json.dumps(recs, indent=2), encoding="utf-8")
    items, _ = read_all(path)
    assert [c.meta["line"] for c in items] == [2, 6, 10]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "gb18030"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes("问题,答案\n发票怎么开,确认收货后申请\n退货运费,质量问题商家承担\n".encode(encoding))
    items, problems = read_all(path)
    assert problems == []
    assert items[0].turns[0].content == "发票怎么开"
    assert items[1].turns[1].content == "质量问题商家承担"


def test_declared_encoding_and_bom_in_json(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps([{"context": "你好", "response": "您好"}]).encode())
    assert read_all(path)[0][0].turns[0].content == "你好"
    gbk = tmp_path / "g.jsonl"
    gbk.write_bytes(json.dumps({"context": "你好", "response": "您好"}, ensure_ascii=False).encode("gbk") + b"\n")
    assert read_all(gbk, encoding="gbk")[0][0].turns[1].content == "您好"


def test_one_bad_byte_in_utf8_is_reported_not_reinterpreted(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = [json.dumps({"context": f"问题{i}", "response": "回答"}, ensure_ascii=False).encode() for i in range(5)]
    path.write_bytes(b"\n".join([*good[:2], b'{"context": "\xff\xfe", "response": "x"}', *good[2:]]) + b"\n")
    items, problems = read_all(path)
    assert len(items) == 5 and items[0].turns[0].content == "问题0"
    assert len(problems) == 1 and problems[0].startswith(f"{path}:3: bytes: undecodable as utf-8")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_broken_json_missing_fields_and_wrong_types(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"instruction": "q", "output": "a"}),
            '{"instruction": "q", "output": ',
            json.dumps({"instruction": "q"}),
            json.dumps({"instruction": 5, "output": "a"}),
            json.dumps({"conversations": []}),  # the first record fixed the format: this is a bad alpaca record
            json.dumps([1, 2]),
            json.dumps({"instruction": "q", "output": "a", "history": [["only question"]]}),
        ],
    )
    items, problems = read_all(path)
    assert len(items) == 1
    assert problems == [
        f"{path}:2: json: invalid JSON: Expecting value (column 32)",
        f"{path}:3: output: missing field",
        f"{path}:4: instruction: wrong type: expected a string, got int",
        f"{path}:5: instruction: missing field",
        f"{path}:6: record: wrong type: expected an object, got list",
        f"{path}:7: history[0]: wrong type: expected [question, answer] strings",
    ]


def test_role_order_and_unknown_roles(tmp_path: Path) -> None:
    def conv(*pairs: tuple[str, str]) -> str:
        return json.dumps({"conversations": [{"from": f, "value": v} for f, v in pairs]})

    path = write_lines(
        tmp_path / "roles.jsonl",
        [
            conv(("human", "a"), ("gpt", "b")),
            conv(("human", "a"), ("human", "b")),
            conv(("gpt", "a"), ("human", "b")),
            conv(("robot?", "a")),
            conv(("human", "a"), ("system", "b")),
            json.dumps({"conversations": "hi"}),
        ],
    )
    items, problems = read_all(path, fmt="sharegpt")
    assert len(items) == 1
    assert problems == [
        f"{path}:2: conversations[1].from: role order: two 'user' turns in a row",
        f"{path}:3: conversations[0].from: role order: must start with a user turn",
        f"{path}:4: conversations[0].from: unknown role 'robot?'",
        f"{path}:5: conversations[1].from: a system message may only come first",
        f"{path}:6: conversations: wrong type: expected a list, got str",
    ]


def test_without_callback_the_first_problem_raises(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "x.jsonl", [{"instruction": "q", "output": "a"}, {"instruction": "q"}])
    with pytest.raises(KefuError, match=r"x\.jsonl:2: output: missing field"):
        list(read_records(path))
    with pytest.raises(KefuError, match="file not found"):
        list(read_records(tmp_path / "nope.jsonl"))


def test_huge_line_is_skipped_without_being_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    monkeypatch.setattr(rows, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / "huge.jsonl"
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"context": "a", "response": "b"}) + "\n")
        f.write('{"context": "' + "x" * (20 << 20) + '", "response": "b"}\n')
        f.write(json.dumps({"context": "c", "response": "d"}) + "\n")
    tracemalloc.start()
    items, problems = read_all(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [c.turns[0].content for c in items] == ["a", "c"]
    assert problems == [f"{path}:2: line: longer than {1 << 20} bytes; skipped"]
    assert peak < 8 << 20  # the 20 MB line never sat in memory


@pytest.mark.parametrize(
    ("keys", "fmt"),
    [
        (["instruction", "input", "output"], "alpaca"),
        (["Context", "Response"], "context_response"),
        (["Question", "Complex_CoT", "Response"], "cot"),
        (["conversations"], "sharegpt"),
        (["messages"], "openai"),
        (["prompt", "chosen", "rejected"], "preference"),
        (["question", "answer"], "csv"),
        (["conversation_id", "timestamp", "sender", "text"], "chatlog"),
        (["foo"], None),
    ],
)
def test_detect_format(keys: list[str], fmt: str | None) -> None:
    assert detect_format(keys) == fmt


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample shop not present")
def test_sample_shop_files_read_cleanly() -> None:
    counts = {}
    for path in [*sorted(SAMPLE.glob("sft_*")), SAMPLE / "preference.jsonl"]:
        items, problems = read_all(path)
        assert problems == [], problems[:3]
        counts[path.name] = len(items)
    assert all(n > 0 for n in counts.values())
    gbk = read_all(SAMPLE / "sft_faq_gbk.csv")[0]
    assert rows.detect_encoding(SAMPLE / "sft_faq_gbk.csv") == "gb18030"
    assert any("发票" in c.text() for c in gbk)
    cot = read_all(SAMPLE / "sft_cot.json")[0]
    assert all(c.turns[-1].reasoning for c in cot)


def test_json_array_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"context": "a", "response": "b"},\n  {"context": "c", "response": }\n]\n', encoding="utf-8")
    items, problems = read_all(path)
    assert len(items) == 1
    assert problems == [f"{path}:3: json: invalid JSON: Expecting value (column 32)"]


def test_preference_problems(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "pref.jsonl",
        [
            json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}),
            json.dumps({"prompt": "q", "chosen": "a"}),
            json.dumps(
                {
                    "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                    "chosen": "a",
                    "rejected": "b",
                }
            ),
            json.dumps({"prompt": "q", "chosen": 1, "rejected": "b"}),
        ],
    )
    items, problems = read_all(path)
    assert len(items) == 1
    assert problems == [
        f"{path}:2: rejected: missing field",
        f"{path}:3: prompt: role order: the prompt must end with a user turn",
        f"{path}:4: chosen: wrong type: expected a string or message, got int",
    ]
