"""Readers for every supported training-data format, converting at the edge into Conversation / Preference.

Formats (keys are matched case-insensitively; `auto` picks the format from the first record whose keys name one):
  alpaca            {instruction, input?, output, system?, history?: [[q, a], ...]}
  context_response  {context, response}
  cot               {Question, Complex_CoT, Response}   (the CoT goes into Turn.reasoning)
  csv               two columns: prompt,response (aliases: question,answer / 问题,答案 ...; or SourceConfig.columns)
  sharegpt          {conversations: [{from: human|user|gpt|assistant|system|function_call|observation, value}],
                     system?, tools?}   (tool use as LLaMA-Factory writes it, see kefu.data.tooluse)
  openai            {messages: [{role: system|user|assistant|tool, content, tool_calls?, tool_call_id?}], tools?}
  preference        {prompt: str | [{role, content}], chosen, rejected, system?}  -> Preference
  chatlog           one row per message (see kefu.data.chatlog)
Files may be JSONL, a JSON array or CSV, in UTF-8 (BOM or not) or GBK/GB18030 (see kefu.data.rows).
Each record carries meta {source, line}. Structural problems (missing field, wrong type, role order) are errors;
empty texts are "soft" problems: `kefu data check` reports them while `prepare` lets the cleaner drop and count them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kefu.data.chatlog import conversations_from_rows, looks_like_chatlog
from kefu.data.rows import OnProblem, Problem, RecordError, iter_rows, report
from kefu.data.schema import Conversation, Preference, Turn, turn_order_problem
from kefu.data.tooluse import CALL_ROLES, RESULT_ROLES, openai_calls, read_tools, result_text, sharegpt_calls

Record = Conversation | Preference

# Column-name aliases of two-column (question, answer) tables, first match wins.
PROMPT_ALIASES = ("prompt", "question", "query", "instruction", "customer_question", "问题", "提问", "客户问题")
RESPONSE_ALIASES = ("response", "answer", "output", "reply", "agent_answer", "答案", "回答", "回复", "客服回答")
_ROLE_NAMES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "system": "system",
    **CALL_ROLES,
    **RESULT_ROLES,
}
# A message as read: (role, content, where it is in the record, extra Turn fields: tool calls, tool_call_id...).
Message = tuple[str, str, str] | tuple[str, str, str, dict[str, Any]]


@dataclass
class Converted:
    """A converted record plus its soft problems (field, problem), e.g. an empty answer."""

    item: Record
    soft: list[tuple[str, str]] = field(default_factory=list)


def _lower_keys(rec: dict[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower(): v for k, v in rec.items()}


def detect_format(keys: Sequence[str], columns: Sequence[str] | None = None) -> str | None:
    """The format a record with these keys is in, or None when nothing matches.

    Named columns decide for tables: two are (prompt, response), more are a chat log's columns."""
    k = {key.strip().lower() for key in keys}
    rules = [
        ("sharegpt", {"conversations"}),
        ("openai", {"messages"}),
        ("preference", {"chosen", "rejected"}),
        ("cot", {"question", "complex_cot", "response"}),
        ("alpaca", {"instruction", "output"}),
        ("context_response", {"context", "response"}),
    ]
    for name, needed in rules:
        if needed <= k:
            return name
    if columns:
        return "csv" if len(columns) == 2 else "chatlog"
    if looks_like_chatlog(k):
        return "chatlog"
    if pick_columns(k, None) is not None:
        return "csv"
    return None


def pick_columns(keys: set[str], columns: Sequence[str] | None) -> tuple[str, str] | None:
    """(prompt, response) column names (lowercased) of a two-column table, or None."""
    if columns:
        return (columns[0].strip().lower(), columns[1].strip().lower())
    prompt = next((a for a in PROMPT_ALIASES if a in keys), None)
    response = next((a for a in RESPONSE_ALIASES if a in keys), None)
    return (prompt, response) if prompt and response else None


def _text(rec: dict[str, Any], key: str, soft: list[tuple[str, str]], required: bool = True) -> str:
    """A string field: missing or non-string is an error, empty is a soft problem."""
    if key not in rec or rec[key] is None:
        if required:
            raise RecordError(key, "missing field")
        return ""
    value = rec[key]
    if not isinstance(value, str):
        raise RecordError(key, f"wrong type: expected a string, got {type(value).__name__}")
    if required and not value.strip():
        soft.append((key, "empty"))
    return value


def _list(rec: dict[str, Any], key: str) -> list[Any]:
    if key not in rec:
        raise RecordError(key, "missing field")
    if not isinstance(rec[key], list):
        raise RecordError(key, f"wrong type: expected a list, got {type(rec[key]).__name__}")
    return list(rec[key])


def build_turns(messages: Sequence[Message]) -> tuple[str | None, list[Turn]]:
    """Messages -> (system, turns); roles must be [system] user assistant user ..., an assistant's tool calls
    followed by their results (see Conversation)."""
    system: str | None = None
    turns: list[Turn] = []
    for i, (role, content, where, *extra) in enumerate(messages):
        if role == "system":
            if i != 0:
                raise RecordError(where, "a system message may only come first")
            system = content
            continue
        turn = Turn(role=role, content=content, **(extra[0] if extra else {}))  # type: ignore[arg-type]
        problem = "must start with a user turn" if not turns and role != "user" else None
        problem = problem or (turn_order_problem(turns[-1], turn) if turns else None)
        if problem:
            raise RecordError(where, f"role order: {problem}")
        _check_call_id(turns, turn, where)
        turns.append(turn)
    if not turns:
        raise RecordError(messages[0][2] if messages else "turns", "no user or assistant message")
    return system, turns


def _check_call_id(turns: list[Turn], turn: Turn, where: str) -> None:
    """A tool result naming a call id answers a call of the assistant turn before its results."""
    if turn.role != "tool" or turn.tool_call_id is None:
        return
    caller = next(t for t in reversed(turns) if t.role != "tool")
    if turn.tool_call_id not in {c.id for c in caller.tool_calls}:
        field = where.rpartition(".")[0] + ".tool_call_id"
        raise RecordError(field, f"{turn.tool_call_id!r} answers no call of the assistant turn before it")


def _messages(rec: dict[str, Any], key: str, role_key: str, text_key: str, soft: list[tuple[str, str]]) -> list[Any]:
    out = []
    for i, msg in enumerate(_list(rec, key)):
        where = f"{key}[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(where, f"wrong type: expected an object, got {type(msg).__name__}")
        msg = _lower_keys(msg)
        raw_role = _text(msg, role_key, [])
        role = _ROLE_NAMES.get(raw_role.strip().lower())
        if role is None:
            raise RecordError(f"{where}.{role_key}", f"unknown role '{raw_role}'")
        content, extra = _tool_parts(msg, raw_role.strip().lower(), text_key, where)
        if content is None:
            content = _content(msg, text_key, where)
        if not content.strip() and role == "assistant" and not extra.get("tool_calls"):
            soft.append((f"{where}.{text_key}", "empty"))
        if "weight" in msg:
            extra["weight"] = _weight(msg["weight"], role, f"{where}.weight")
        out.append((role, content, f"{where}.{role_key}", extra))
    return out


def _weight(value: Any, role: str, where: str) -> int:
    """OpenAI fine-tuning's per-message weight: 0 (context only, no loss) or 1, on assistant messages only."""
    if isinstance(value, bool) or value not in (0, 1):
        raise RecordError(where, f"wrong value: expected 0 (not learned) or 1 (learned), got {value!r}")
    if role != "assistant":
        raise RecordError(where, f"a weight is only meaningful on assistant messages, not on a '{role}' message")
    return int(value)


def _tool_parts(msg: dict[str, Any], raw_role: str, text_key: str, where: str) -> tuple[str | None, dict[str, Any]]:
    """(content when the tool parts decide it, extra Turn fields) of a call or result message; (None, {}) else."""
    if raw_role in CALL_ROLES:  # ShareGPT: the whole value is the call
        return "", {"tool_calls": sharegpt_calls(msg.get(text_key), f"{where}.{text_key}")}
    if raw_role in RESULT_ROLES:
        extra = {k: str(msg[k]) for k in ("tool_call_id", "name") if msg.get(k)}
        return result_text(msg.get(text_key), f"{where}.{text_key}"), extra
    calls = openai_calls(msg, where)
    if calls:  # an OpenAI assistant message that only calls tools has content null
        return (_content(msg, text_key, where) if msg.get(text_key) is not None else ""), {"tool_calls": calls}
    return None, {}


def _content(msg: dict[str, Any], key: str, where: str) -> str:
    """Message text; OpenAI-style lists of parts keep their text parts."""
    value = msg.get(key)
    if isinstance(value, list):
        parts = [p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(str(p) for p in parts)
    if value is None:
        raise RecordError(f"{where}.{key}", "missing field")
    if not isinstance(value, str):
        raise RecordError(f"{where}.{key}", f"wrong type: expected a string, got {type(value).__name__}")
    return value


def _conversation(
    system: str | None, turns: list[Turn], soft: list[tuple[str, str]], where: str = "turns",
    tools: list[dict[str, Any]] | None = None,
) -> Converted:  # fmt: skip
    if turns[-1].tool_calls:
        raise RecordError(where, "the last turn calls tools but no tool result follows")
    if turns[-1].role != "assistant":
        soft.append((where, f"ends with a {turns[-1].role} turn (no answer)"))
    return Converted(Conversation(system=system or None, turns=turns, tools=tools), soft)


def from_alpaca(rec: dict[str, Any]) -> Converted:
    soft: list[tuple[str, str]] = []
    question = _text(rec, "instruction", soft)
    extra = _text(rec, "input", [], required=False)
    messages: list[tuple[str, str, str]] = []
    for i, pair in enumerate(rec.get("history") or []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise RecordError(f"history[{i}]", "wrong type: expected [question, answer] strings")
        messages += [("user", pair[0], f"history[{i}]"), ("assistant", pair[1], f"history[{i}]")]
    user = f"{question}\n{extra}" if extra.strip() else question
    messages += [("user", user, "instruction"), ("assistant", _text(rec, "output", soft), "output")]
    _, turns = build_turns(messages)
    return _conversation(_text(rec, "system", [], required=False), turns, soft)


def from_pair(rec: dict[str, Any], prompt_key: str, response_key: str, reasoning_key: str | None = None) -> Converted:
    soft: list[tuple[str, str]] = []
    user = Turn(role="user", content=_text(rec, prompt_key, soft))
    answer = Turn(role="assistant", content=_text(rec, response_key, soft))
    if reasoning_key is not None:
        answer.reasoning = _text(rec, reasoning_key, soft) or None
    return _conversation(None, [user, answer], soft)


def from_sharegpt(rec: dict[str, Any]) -> Converted:
    soft: list[tuple[str, str]] = []
    system, turns = build_turns(_messages(rec, "conversations", "from", "value", soft))
    system = system or _text(rec, "system", [], required=False)
    return _conversation(system, turns, soft, "conversations", read_tools(rec.get("tools")))


def from_openai(rec: dict[str, Any]) -> Converted:
    soft: list[tuple[str, str]] = []
    system, turns = build_turns(_messages(rec, "messages", "role", "content", soft))
    return _conversation(system, turns, soft, "messages", read_tools(rec.get("tools")))


def _answer(rec: dict[str, Any], key: str, soft: list[tuple[str, str]]) -> str:
    """chosen/rejected: a string, a message, or a message list whose last message is the answer."""
    value = rec.get(key)
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        value = _content(_lower_keys(value), "content", key)
    if value is None:
        raise RecordError(key, "missing field")
    if not isinstance(value, str):
        raise RecordError(key, f"wrong type: expected a string or message, got {type(value).__name__}")
    if not value.strip():
        soft.append((key, "empty"))
    return value


def from_preference(rec: dict[str, Any]) -> Converted:
    soft: list[tuple[str, str]] = []
    prompt = rec.get("prompt")
    if isinstance(prompt, list):
        system, turns = build_turns(_messages(rec, "prompt", "role", "content", soft))
    else:
        system, turns = None, [Turn(role="user", content=_text(rec, "prompt", soft))]
    if turns[-1].role != "user":
        raise RecordError("prompt", "role order: the prompt must end with a user turn")
    chosen, rejected = _answer(rec, "chosen", soft), _answer(rec, "rejected", soft)
    system = system or _text(rec, "system", [], required=False) or None
    return Converted(Preference(system=system, prompt=turns, chosen=chosen, rejected=rejected), soft)


def convert(rec: Any, fmt: str, columns: Sequence[str] | None = None) -> Converted:
    """One raw record -> canonical object; raises RecordError naming the field."""
    if not isinstance(rec, dict):
        raise RecordError("record", f"wrong type: expected an object, got {type(rec).__name__}")
    rec = _lower_keys(rec)
    if fmt == "alpaca":
        return from_alpaca(rec)
    if fmt == "context_response":
        return from_pair(rec, "context", "response")
    if fmt == "cot":
        return from_pair(rec, "question", "response", reasoning_key="complex_cot")
    if fmt == "sharegpt":
        return from_sharegpt(rec)
    if fmt == "openai":
        return from_openai(rec)
    if fmt == "preference":
        return from_preference(rec)
    if fmt == "csv":
        cols = pick_columns(set(rec), columns)
        if cols is None:
            raise RecordError("columns", "no prompt/response columns; name them in the source's `columns`")
        return from_pair(rec, *cols)
    raise RecordError("format", f"unknown format '{fmt}'")


def read_converted(
    path: str | Path,
    fmt: str = "auto",
    encoding: str = "auto",
    columns: Sequence[str] | None = None,
    on_problem: OnProblem | None = None,
    source: str | None = None,
    stats: Counter[str] | None = None,
) -> Iterator[tuple[int, Converted]]:
    """Stream (line, Converted) from a file. Problems go to on_problem, or raise KefuError when it is None.

    Chat logs are grouped into conversations; threads they drop are counted in `stats`."""
    path = Path(path)
    source = source or path.name
    rows = iter_rows(path, encoding, on_problem)
    for line, rec in rows:
        if fmt == "auto":
            # Detect from the first record whose keys name a format: one bad record must not hide the rest.
            fmt = (detect_format(list(rec), columns) if isinstance(rec, dict) else None) or "auto"
            if fmt == "auto":
                keys = ", ".join(map(str, rec)) if isinstance(rec, dict) else type(rec).__name__
                report(on_problem, Problem(str(path), line, "format", f"cannot tell the format from keys: {keys}"))
                continue
        if fmt == "chatlog":
            chat_rows = chain([(line, rec)], rows)
            for chat in conversations_from_rows(chat_rows, str(path), columns, on_problem, stats, source=source):
                yield chat.meta["line"], Converted(chat)
            return
        try:
            conv = convert(rec, fmt, columns)
        except RecordError as e:
            report(on_problem, Problem(str(path), line, e.field, e.problem))
            continue
        except ValidationError as e:  # a rule of the canonical schema the converter did not check itself
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "record"
            report(on_problem, Problem(str(path), line, where, err["msg"]))
            continue
        if isinstance(rec.get("meta"), dict):  # kefu's own files (synth) carry where a record came from
            conv.item.meta.update(rec["meta"])
        conv.item.meta.update(source=source, line=line)
        yield line, conv


def read_records(
    path: str | Path,
    fmt: str = "auto",
    encoding: str = "auto",
    columns: Sequence[str] | None = None,
    on_problem: OnProblem | None = None,
    source: str | None = None,
    stats: Counter[str] | None = None,
) -> Iterator[Record]:
    """Stream Conversation / Preference objects (meta {source, line}) from a file of any supported format."""
    for _, conv in read_converted(path, fmt, encoding, columns, on_problem, source, stats):
        yield conv.item
