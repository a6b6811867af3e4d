"""`kefu data check`: one `file:line: field: problem` line per problem, a summary line, exit code 1 on problems."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kefu.cli import app
from kefu.data.check import check_files

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "kefu" / "samples" / "shop" / "data"


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["data", "check", *args])
    return result.exit_code, result.output.strip().splitlines()


def test_problems_are_listed_with_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"instruction": "q", "output": "an answer"}) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "an answer"}]}),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}),
        json.dumps({"messages": [{"role": "assistant", "content": "a"}]}),
        json.dumps({"messages": [{"role": "user"}]}),
    ]
    bad.write_bytes(("\n".join(lines) + "\n").encode() + b'{"messages": "\xff"}\n')
    code, out = run(str(good), str(bad), str(tmp_path / "missing.csv"))
    assert code == 1
    assert out == [
        f"{bad}:2: json: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{bad}:3: messages[1].content: empty",
        f"{bad}:4: messages[0].role: role order: must start with a user turn",
        f"{bad}:5: messages[0].content: missing field",
        f"{bad}:6: bytes: undecodable as utf-8: invalid start byte",
        f"{tmp_path / 'missing.csv'}: file not found",
        "2 records ok, 6 bad",
    ]


def test_clean_files_exit_zero(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes("问题,答案\n怎么开发票,确认收货后申请\n".encode("gbk"))
    assert run(str(path)) == (0, ["1 records ok, 0 bad"])


def test_format_and_columns_options(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("q,a\nhi,hello\nyo,\n", encoding="utf-8")
    code, out = run(str(path), "--format", "csv", "--columns", "q,a")
    assert (code, out) == (1, [f"{path}:3: a: empty", "1 records ok, 1 bad"])


def test_eval_cases_are_checked(tmp_path: Path) -> None:
    case = {"id": "c1", "category": "policy", "turns": [{"role": "user", "content": "q"}], "reference": "r"}
    path = tmp_path / "eval.jsonl"
    rows = [case, case, {**case, "id": "c2", "category": "nope"}, {**case, "id": "c3", "turns": []}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out = run(str(path))
    assert code == 1
    assert out[0] == f"{path}:2: id: duplicate id 'c1' (first on line 1)"
    assert out[1].startswith(f"{path}:3: category: Input should be")
    assert out[2].startswith(f"{path}:4: turns: Value error, an eval case must end with a user turn")
    assert out[3] == "1 records ok, 3 bad"


def test_sample_shop_data_checks_clean() -> None:
    problems: list[str] = []
    result = check_files(sorted(SAMPLE.iterdir()), problems.append)
    assert result.bad == 0 and result.ok > 300
    # the sample keeps a few near-duplicates on purpose, to show dedup; check names them as notes
    assert len(problems) == result.duplicates and all(p.endswith("(near_duplicate)") for p in problems)


def test_reports_what_prepare_would_drop(tmp_path: Path) -> None:
    pair = {"prompt": "能便宜点吗", "chosen": "抱歉，价格无法修改。", "rejected": "抱歉，价格无法修改！"}
    other = {"prompt": "多久发货", "chosen": "48小时内发货。", "rejected": "马上就发，保证明天到。"}
    junk = {"prompt": "在吗", "chosen": "加微信 abc123456 领券", "rejected": "您好，请问有什么可以帮您？"}
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (pair, other, junk, other)), "utf-8")
    code, out = run(str(path))
    assert code == 1
    assert out == [
        f"{path}:1: record: prepare would drop it: chosen and rejected are the same answer (same_answer)",
        f"{path}:3: record: prepare would drop it: looks like an ad, spam or keyboard mashing (junk)",
        f"{path}:4: record: prepare would drop it: repeats an earlier record (exact_duplicate)",
        "1 records ok, 2 bad, 1 duplicates prepare would drop",
    ]


def test_auto_format_survives_a_bad_first_record(tmp_path: Path) -> None:
    """Under format: auto a first record of unknown shape used to end the file: every later record was unseen."""
    path = tmp_path / "mixed.jsonl"
    rows = [{"note": "exported 2026-12-01"}, {"instruction": "怎么开发票", "output": "确认收货后申请。"},
            {"instruction": "几点发货", "output": ""}]  # fmt: skip
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out = run(str(path))
    assert (code, out) == (1, [f"{path}:1: format: cannot tell the format from keys: note", f"{path}:3: output: empty",
                               "1 records ok, 2 bad"])  # fmt: skip
