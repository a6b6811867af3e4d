"""Tool-use records at the edge: OpenAI `tool_calls` + `role: tool` messages, and ShareGPT `function_call` /
`observation` turns with a `tools` field as LLaMA-Factory writes them, converted into canonical Turns.

    openai    {"tools": [...], "messages": [..., {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1",
              "type": "function", "function": {"name": "get_order", "arguments": "{\"order_id\": \"DD1\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "content": "{...}"}, ...]}
    sharegpt  {"tools": "[{\"name\": \"get_order\", \"description\": ..., \"parameters\": {...}}]",
               "conversations": [{"from": "human", ...}, {"from": "function_call",
               "value": "{\"name\": \"get_order\", \"arguments\": {\"order_id\": \"DD1\"}}"},
               {"from": "observation", "value": "{...}"}, {"from": "gpt", ...}]}

`tools` may be a list or a JSON string of one; each tool either OpenAI's {type: function, function: {...}} or the
bare {name, description, parameters} LLaMA-Factory uses (wrapped into the OpenAI shape). A function_call's value is
one call or a JSON list of calls (parallel calls), each {name, arguments}. Every problem is a RecordError naming
the field, so the reader reports `file:line: field: problem`.
"""

from __future__ import annotations

import json
from typing import Any

from kefu.data.rows import RecordError
from kefu.data.schema import ToolCall

CALL_ROLES = {"function_call": "assistant"}  # ShareGPT speakers that are an assistant's tool call
RESULT_ROLES = {"observation": "tool", "tool": "tool", "function": "tool", "ipython": "tool"}


def _json(value: Any, where: str, what: str) -> Any:
    """A field that may hold JSON as a string (LLaMA-Factory writes tools and calls that way)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise RecordError(where, f"{what} is not valid JSON: {e.msg} at char {e.pos}") from e


def read_tools(value: Any, where: str = "tools") -> list[dict[str, Any]] | None:
    """The record's `tools` in the OpenAI shape, or None when absent or empty."""
    tools = _json(value, where, "tools")
    if tools in (None, "", []):
        return None
    if not isinstance(tools, list):
        raise RecordError(where, f"wrong type: expected a list of tools, got {type(tools).__name__}")
    return [_tool(t, f"{where}[{i}]") for i, t in enumerate(tools)]


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise RecordError(where, f"wrong type: expected an object, got {type(tool).__name__}")
    fn = tool.get("function") if tool.get("type") == "function" else tool
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
        raise RecordError(f"{where}.name", "missing field: every tool needs a function name")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise RecordError(f"{where}.parameters", "wrong type: expected a JSON-schema object")
    out = {"name": fn["name"], "description": str(fn.get("description", "")), "parameters": params}
    return {"type": "function", "function": out}


def _call(obj: Any, where: str, call_id: str | None = None) -> ToolCall:
    if not isinstance(obj, dict):
        raise RecordError(where, f"wrong type: expected a call object, got {type(obj).__name__}")
    fn = obj.get("function", obj)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
        raise RecordError(f"{where}.name", "missing field: a tool call needs the function's name")
    args = _json(fn.get("arguments", fn.get("parameters", {})), f"{where}.arguments", "arguments")
    if not isinstance(args, dict):
        raise RecordError(f"{where}.arguments", f"wrong type: expected a JSON object, got {type(args).__name__}")
    raw_id = obj.get("id", call_id)
    return ToolCall(id=str(raw_id) if raw_id else None, name=fn["name"], arguments=args)


def openai_calls(msg: dict[str, Any], where: str) -> list[ToolCall]:
    """An OpenAI assistant message's `tool_calls` (empty when it has none)."""
    raw = msg.get("tool_calls")
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise RecordError(f"{where}.tool_calls", f"wrong type: expected a list, got {type(raw).__name__}")
    return [_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(raw)]


def sharegpt_calls(value: Any, where: str) -> list[ToolCall]:
    """A ShareGPT function_call turn's value: one call, or a list of parallel calls."""
    obj = _json(value, where, "the function call")
    calls = obj if isinstance(obj, list) else [obj]
    if not calls:
        raise RecordError(where, "a function_call turn with no call")
    return [_call(c, f"{where}[{i}]" if isinstance(obj, list) else where) for i, c in enumerate(calls)]


def result_text(value: Any, where: str) -> str:
    """A tool result as text: strings as they are, JSON values serialised (some writers store objects)."""
    if value is None:
        raise RecordError(where, "missing field")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
