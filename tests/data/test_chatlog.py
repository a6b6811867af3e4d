"""Chat-log exports: grouping, time order, merging, bot/agent roles, dropped threads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from kefu.data.chatlog import parse_time, read_chatlog
from kefu.data.formats import read_records
from kefu.data.rows import Problem

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop" / "data" / "chatlog.csv"

ROWS = [
    # thread A (written out of order): auto greeting first, two customer lines, bot + agent answer, trailing question
    ("A", "2026-11-01 10:00:05", "agent", "您好，在的"),
    ("A", "2026-11-01 10:00:00", "bot", "欢迎光临"),
    ("A", "2026-11-01 10:00:03", "customer", "在吗"),
    ("A", "2026-11-01 10:00:04", "customer", "想退货"),
    ("A", "2026-11-01 10:01:00", "customer", "七天内可以吗"),
    ("A", "2026-11-01 10:01:30", "bot", "正在为您转接"),
    ("A", "2026-11-01 10:02:00", "agent", "可以，七天无理由"),
    ("A", "2026-11-01 10:03:00", "customer", "好的谢谢"),
    # thread B: bot only
    ("B", "2026-11-01 11:00:00", "bot", "欢迎光临"),
    ("B", "2026-11-01 11:00:01", "bot", "请问有什么可以帮您"),
    # thread C: customer never answered
    ("C", "2026-11-01 12:00:00", "customer", "有人吗"),
    # thread D: empty texts
    ("D", "2026-11-01 13:00:00", "customer", "  "),
    ("D", "2026-11-01 13:00:01", "agent", ""),
    # thread E: answered by the bot only counts (bot answers are assistant turns); a system notice is skipped
    ("E", "2026-11-01 14:00:00", "customer", "运费多少"),
    ("E", "2026-11-01 14:00:01", "system", "对方已进入会话"),
    ("E", "2026-11-01 14:00:02", "bot", "满199包邮"),
    # thread F: two sessions a day apart
    ("F", "2026-11-01 09:00:00", "customer", "发票怎么开"),
    ("F", "2026-11-01 09:00:30", "agent", "确认收货后申请"),
    ("F", "2026-11-02 09:00:00", "customer", "价保怎么申请"),
    ("F", "2026-11-02 09:00:40", "agent", "15天内可申请"),
]


def write_csv(path: Path, rows: list[tuple[str, str, str, str]], header: str) -> Path:
    lines = [header] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_threads_are_grouped_sorted_merged_and_filtered(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "log.csv", ROWS, "conversation_id,timestamp,sender,text")
    stats: Counter[str] = Counter()
    convs = list(read_chatlog(path, stats=stats))
    by_id: dict[str, list[list[str]]] = {}
    for c in convs:
        by_id.setdefault(c.meta["conversation_id"], []).append([t.content for t in c.turns])
    assert by_id["A"] == [["在吗\n想退货", "您好，在的", "七天内可以吗", "正在为您转接\n可以，七天无理由"]]
    assert by_id["E"] == [["运费多少", "满199包邮"]]
    assert by_id["F"] == [["发票怎么开", "确认收货后申请"], ["价保怎么申请", "15天内可申请"]]
    assert set(by_id) == {"A", "E", "F"}
    assert stats == Counter(chatlog_no_customer=1, chatlog_no_answer=1, chatlog_empty_thread=1)
    assert all(c.turns[0].role == "user" and c.turns[-1].role == "assistant" for c in convs)
    assert convs[0].meta["source"] == "log.csv" and convs[0].meta["line"] == 3  # where the thread starts


def test_aliases_jsonl_and_auto_detection(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    recs = [
        {"session_id": 7, "time": 1700000000, "role": "客户", "content": "在吗"},
        {"session_id": 7, "time": 1700000005, "role": "客服", "content": "在的"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    (conv,) = list(read_records(path))
    assert [t.content for t in conv.turns] == ["在吗", "在的"]
    assert conv.meta["conversation_id"] == "7"


def test_named_columns_and_row_problems(tmp_path: Path) -> None:
    rows = [("1", "2026-11-01 10:00:00", "buyer", "hi"), ("1", "yesterday", "seller", "x"), ("1", "5", "alien", "y")]
    path = write_csv(tmp_path / "named.csv", [(a, b, c, d) for a, b, c, d in rows], "cid,at,who,msg")
    problems: list[Problem] = []
    convs = list(read_chatlog(path, columns=["cid", "at", "who", "msg"], on_problem=problems.append))
    assert convs == []  # the only answer was on a bad row
    assert [str(p) for p in problems] == [
        f"{path}:3: at: unreadable time 'yesterday'",
        f"{path}:4: who: unknown sender 'alien' (expected customer, agent or bot)",
    ]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1700000000, 1700000000.0), ("1700000000000", 1700000000.0), ("2026-11-01T10:00:00Z", 1793527200.0)],
)
def test_parse_time(value: object, seconds: float) -> None:
    assert parse_time(value) == seconds


@pytest.mark.skipif(not SAMPLE.is_file(), reason="sample shop not present")
def test_sample_chatlog() -> None:
    stats: Counter[str] = Counter()
    problems: list[Problem] = []
    convs = list(read_chatlog(SAMPLE, stats=stats, on_problem=problems.append))
    assert problems == []
    assert convs and sum(stats.values()) > 0  # the sample has bot-only / unanswered threads to drop
    assert all(c.turns[0].role == "user" and c.turns[-1].role == "assistant" for c in convs)


def test_wrong_number_of_columns_is_a_config_error(tmp_path: Path) -> None:
    from kefu.errors import KefuError

    path = write_csv(tmp_path / "log.csv", ROWS[:2], "conversation_id,timestamp,sender,text")
    with pytest.raises(KefuError, match=r"log\.csv: columns: a chat log needs 4 columns"):
        list(read_chatlog(path, columns=["conversation_id", "sender", "text"]))
