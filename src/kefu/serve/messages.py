"""An OpenAI request's messages as the answer pipeline's turns, with the tool parts checked.

Client system (and developer) messages are dropped: the persona's system prompt is authoritative. Assistant
`tool_calls` keep their ids and get their JSON-string arguments parsed (the chat templates render objects); `tool`
messages keep the id of the call they answer. A malformed tool part is a 400 naming the message.
"""

from __future__ import annotations

import json
from typing import Any

from kefu.serve.errors import ApiError
from kefu.serve.protocol import ChatMessage, ToolCallOut


def _bad(where: str, problem: str) -> ApiError:
    return ApiError(400, f"{where}: {problem}", "invalid_messages", where)


def _call(call: ToolCallOut, where: str) -> dict[str, Any]:
    try:
        args = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as e:
        raise _bad(f"{where}.function.arguments", f"not valid JSON ({e.msg} at char {e.pos})") from e
    if not isinstance(args, dict):
        raise _bad(f"{where}.function.arguments", "must be a JSON object")
    return {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": args}}


def _turn(m: ChatMessage, where: str) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": m.role, "content": m.text()}
    if m.role == "assistant" and m.tool_calls:
        turn["tool_calls"] = [_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(m.tool_calls)]
    if m.role == "tool":
        turn["tool_call_id"] = m.tool_call_id or ""
    return turn


def _check_order(prev: dict[str, Any] | None, turn: dict[str, Any], where: str) -> None:
    """Tool results follow the assistant's calls (and answer one of them); calls are followed by their results."""
    if prev is not None and prev.get("tool_calls") and turn["role"] != "tool":
        raise _bad(where, "the assistant's tool_calls must be followed by their tool messages")
    if turn["role"] != "tool":
        return
    if prev is None or not (prev.get("tool_calls") or prev["role"] == "tool"):
        raise _bad(where, "a tool message must follow an assistant message with tool_calls")


def conversation_turns(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation's user, assistant and tool turns in order (see the module docstring)."""
    turns: list[dict[str, Any]] = []
    calls: set[str] = set()  # ids of the calls the tool messages being read answer
    for i, m in enumerate(messages):
        if m.role not in ("user", "assistant", "tool"):
            continue
        turn = _turn(m, f"messages[{i}]")
        _check_order(turns[-1] if turns else None, turn, f"messages[{i}]")
        if turn.get("tool_calls"):
            calls = {c["id"] for c in turn["tool_calls"]}
        elif turn["role"] == "tool" and turn["tool_call_id"] not in calls:
            raise _bad(f"messages[{i}].tool_call_id", f"{turn['tool_call_id']!r} answers no call of the assistant")
        turns.append(turn)
    return turns
