"""Tool calls in the model's own format: one rendering function for training and serving, and the parsers.

`render(tokenizer, messages, tools, add_generation_prompt)` is the only place a conversation with tools becomes
prompt text: the SFT tokenizer (kefu.train.tokenize) and the local engines (hf, onnx) both call it, so a model is
served exactly the text it was trained on. The chat template does the rendering; kefu only normalises the messages
(call arguments as JSON objects, as the Qwen2.5 and Llama 3.1 templates expect; vLLM does the same) and checks,
once per tokenizer, that the template renders tools in a format kefu can parse back:

    qwen    Qwen2.5: tools in the system message, each call a <tool_call> block of {"name": ..., "arguments": {}},
            results as <tool_response> blocks in a user turn (kefu's `qwen`/`chatml` templates and Qwen's own)
    llama3  Llama 3.1-3.3 JSON tool calling: calls as {"name": ..., "parameters": {...}} (several joined by "; "),
            results in `ipython` turns (kefu's `llama3` template and Meta's own)

    openai  an engine that parses calls itself: an upstream vLLM/SGLang server renders the tools with the model's
            template, runs its own tool parser and returns OpenAI `tool_calls` (Chunk.tool_calls); its text is text

Any other template is refused with a clear error instead of silently dropping the tools. The parsers read a
model's output back into calls as vLLM's `hermes` (Qwen2.5) and `llama3_json` tool parsers do; `CallSplitter`
does it while the answer streams, releasing ordinary text at once and each call whole.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from kefu.answer.engines.base import Chunk
from kefu.answer.textstream import HOLD, bare_call_start, segment_end
from kefu.data.schema import ToolCall, Turn
from kefu.errors import KefuError

ToolFormat = Literal["qwen", "llama3", "openai"]
QWEN_OPEN, QWEN_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"  # Llama 3.x may open a call with it (a special token: usually decoded away)

_PROBE_TOOL = {"type": "function", "function": {"name": "kefu_probe", "description": "probe",
                                                "parameters": {"type": "object", "properties": {}}}}  # fmt: skip
_PROBE = [
    {"role": "user", "content": "probe"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_probe", "type": "function", "function": {"name": "kefu_probe", "arguments": {"q": 7}}}]},
    {"role": "tool", "tool_call_id": "call_probe", "content": "probe-result"},
]  # fmt: skip
_DECODER = json.JSONDecoder()
_FORMATS: dict[str, ToolFormat | KefuError] = {}  # chat template text -> its tool format (never "openai")


class ToolsUnsupported(KefuError):
    """The model's chat template (or the engine) cannot render or parse tool calls."""


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- messages
def message_of(turn: Turn) -> dict[str, Any]:
    """A canonical Turn as a chat-template message (no `tool_calls` key without calls: templates test for it)."""
    msg: dict[str, Any] = {"role": turn.role, "content": turn.content}
    if turn.tool_calls:
        msg["tool_calls"] = [call_message(c) for c in turn.tool_calls]
    if turn.role == "tool":
        if turn.tool_call_id:
            msg["tool_call_id"] = turn.tool_call_id
        if turn.name:
            msg["name"] = turn.name
    return msg


def call_message(call: ToolCall) -> dict[str, Any]:
    """One call in the OpenAI message shape, arguments as an object (what chat templates render with tojson)."""
    return {"id": call.id or "", "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _normalised(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies with JSON-string arguments parsed (OpenAI clients send strings; templates want objects)."""
    out = []
    for msg in messages:
        msg = {**msg, "content": msg.get("content") or ""}
        if not msg.get("tool_calls"):
            msg.pop("tool_calls", None)
        else:
            msg["tool_calls"] = [_call_with_object(c) for c in msg["tool_calls"]]
        out.append(msg)
    return out


def _call_with_object(call: dict[str, Any]) -> dict[str, Any]:
    fn = dict(call.get("function") or {})
    if isinstance(fn.get("arguments"), str):
        try:
            fn["arguments"] = json.loads(fn["arguments"] or "{}")
        except json.JSONDecodeError as e:
            raise KefuError(f"tool call {fn.get('name')!r}: arguments are not valid JSON: {e}") from e
    return {**call, "type": "function", "function": fn}


def tool_names(tools: list[dict[str, Any]] | None) -> frozenset[str]:
    """The names of OpenAI tool definitions (or bare {name, ...} ones)."""
    return frozenset(str((t.get("function") or t).get("name")) for t in tools or [])


def uses_tools(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)


# --------------------------------------------------------------------------- rendering
def render(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:  # fmt: skip
    """The prompt text of `messages` (and `tools`) in the tokenizer's chat template: the one rendering path of
    training and serving. A conversation with tools or tool turns needs a template `tool_format` accepts."""
    if uses_tools(messages, tools):
        tool_format(tokenizer)
        kwargs: dict[str, Any] = {"tools": tools} if tools else {}
        msgs = _normalised(messages)
    else:
        kwargs, msgs = {}, messages
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs)
    return str(text)


def tool_format(tokenizer: Any) -> ToolFormat:
    """The tool-call format the tokenizer's chat template writes (checked once per template text by rendering a
    probe conversation); ToolsUnsupported when it renders tools in no format kefu parses, or not at all."""
    key = str(getattr(tokenizer, "chat_template", None))
    known = _FORMATS.get(key)
    if known is None:
        known = _FORMATS[key] = _probe(tokenizer)
    if isinstance(known, KefuError):
        raise known
    return known


def _probe(tokenizer: Any) -> ToolFormat | KefuError:
    where = getattr(tokenizer, "name_or_path", "") or "the model"
    try:
        text = str(tokenizer.apply_chat_template(_PROBE, tools=[_PROBE_TOOL], tokenize=False))
    except Exception as e:  # jinja errors of a template that knows no tool roles
        text = f"<error: {e}>"
    has_tool = '"name": "kefu_probe"' in text and "probe-result" in text
    if has_tool and '<tool_call>\n{"name": "kefu_probe", "arguments": {"q": 7}}\n</tool_call>' in text:
        return "qwen"
    if has_tool and '{"name": "kefu_probe", "parameters": {"q": 7}}' in text and "<|start_header_id|>" in text:
        return "llama3"
    return ToolsUnsupported(
        f"{where}: its chat template does not render tool calls in a format kefu can parse back (Qwen2.5 "
        "<tool_call> JSON or Llama 3.x JSON tool calling), so tools, tool_calls and tool messages cannot be used "
        "with it; set model.template to qwen or llama3 (or use a Qwen2.5 / Llama 3.1+ model with its own template)"
    )


# --------------------------------------------------------------------------- parsing
def parse(text: str, fmt: ToolFormat, names: frozenset[str] = frozenset()) -> tuple[str, list[ToolCall]]:
    """(content, calls) of a whole model output; text that is not a well-formed call stays content. `names`: the
    tools offered, to read bare calls too (see CallSplitter)."""
    splitter = CallSplitter(fmt, names=names)
    pieces = [*splitter.feed(text), *splitter.finish()]
    content = "".join(p for p in pieces if isinstance(p, str))
    return content, [p for p in pieces if isinstance(p, ToolCall)]


def _call_of(obj: Any, args_key: str) -> ToolCall | None:
    """A parsed JSON object as a call when it has a name and object arguments (a JSON string of one is accepted)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get(args_key, obj.get("arguments", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=args) if isinstance(args, dict) else None


def _qwen_call(block: str) -> ToolCall | None:
    try:
        return _call_of(json.loads(block.strip()), "arguments")
    except json.JSONDecodeError:
        return None


def _llama_calls(text: str) -> list[ToolCall] | None:
    """Llama 3.x: one or more JSON objects joined by ';' (vLLM's llama3_json reads the same); None if not that."""
    decoder, calls, i = json.JSONDecoder(), [], 0
    text = text.strip().removeprefix(PYTHON_TAG).strip()
    while i < len(text):
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        call = _call_of(obj, "parameters")
        if call is None:
            return None
        calls.append(call)
        while i < len(text) and text[i] in " \n\t;":
            i += 1
    return calls or None


class CallSplitter:
    """Streaming: feed the model's text as it comes; get back ordinary text (released at once, except what may be
    the start of a call) and each tool call once it is complete. `finish()` flushes at the end of the answer.

    A malformed call (bad JSON, cut off) is text for a client's tools (`bad_as_text`: the client sees what the model
    said); otherwise it is held back in `bad`, for the shop's actions to answer instead of showing the markup.
    `names`: the tools offered. With them, a Qwen answer segment that opens with junk and a bare {"name": ...} JSON
    (the call token mis-written, kefu.answer.textstream.bare_call_start) is held and read as a call of an offered
    tool (any other name: a malformed call); it is never shown as text."""

    def __init__(self, fmt: ToolFormat, bad_as_text: bool = True, names: frozenset[str] = frozenset()) -> None:
        self.fmt, self.bad_as_text, self.names = fmt, bad_as_text, names
        self.buf = ""
        self.in_call = False  # qwen: inside <tool_call>...; llama3: the answer is a JSON call
        self.decided = fmt != "llama3"  # llama3 decides on the first non-blank character
        self.calls = 0
        self.bad: list[str] = []  # malformed calls held back (bad_as_text off)
        self.segment = True  # qwen: the buffer starts a segment (the answer, a line, a sentence): a bare call may open
        self.in_bare = False  # qwen: the buffer starts with a bare call's "{" (its junk dropped)
        self.after_bare = False  # qwen: a </tool_call> right after a bare call closes it

    def feed(self, text: str) -> list[str | ToolCall]:
        if self.fmt == "openai":  # the engine parsed the calls already: its text is only text
            return [text] if text else []
        self.buf += text
        return self._qwen() if self.fmt == "qwen" else self._llama(final=False)

    def finish(self) -> list[str | ToolCall]:
        if self.fmt == "llama3":
            return self._llama(final=True)
        out: list[str | ToolCall] = []
        if self.in_call:  # cut off inside a call (max tokens, a stop string): parse what is there
            call = _qwen_call(self.buf.removesuffix(QWEN_CLOSE))
            self._call_or_bad(out, call, QWEN_OPEN + self.buf)
        elif self.in_bare:  # a bare call that never completed
            self._call_or_bad(out, None, self.buf)
        elif self.buf and not (self.calls and not self.buf.strip()):
            out.append(self.buf)
        self.buf, self.in_call, self.in_bare = "", False, False
        self.calls += sum(isinstance(p, ToolCall) for p in out)
        return out

    def _qwen(self) -> list[str | ToolCall]:
        out: list[str | ToolCall] = []
        while True:
            if self.in_call:
                end = self.buf.find(QWEN_CLOSE)
                if end < 0:
                    return out
                block, self.buf, self.in_call = self.buf[:end], self.buf[end + len(QWEN_CLOSE) :], False
                call = _qwen_call(block)
                self._call_or_bad(out, call, QWEN_OPEN + block + QWEN_CLOSE)
                self.calls += call is not None
                self.segment = True
                continue
            if self.names and (self.in_bare or self.after_bare or self.segment):
                step = self._bare(out)
                if step == "hold":  # may still be (or is) a bare call
                    return out
                if step == "call":
                    continue
            start = self.buf.find(QWEN_OPEN)
            end = segment_end(self.buf) if self.names else -1
            if start >= 0 and (end < 0 or start < end):
                self._release(out, self.buf[:start])
                self.buf, self.in_call = self.buf[start + len(QWEN_OPEN) :], True
                continue
            if end >= 0:  # a new segment starts after the line or sentence end: a bare call may open there
                self._release(out, self.buf[:end])
                self.buf, self.segment = self.buf[end:], True
                continue
            keep = _partial_suffix(self.buf, QWEN_OPEN)  # may be the start of "<tool_call>": hold it
            self._release(out, self.buf[: len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep :]
            return out

    def _bare(self, out: list[str | ToolCall]) -> Literal["hold", "call", "text"]:
        """A bare call at the start of the buffer, read once complete ("call"); "hold" while it may be one or is
        not complete; "text" when the segment is ordinary text."""
        if self.after_bare:  # the model may close its mis-opened call properly: drop the tag
            head = self.buf.lstrip()
            if len(head) < len(QWEN_CLOSE) and QWEN_CLOSE.startswith(head):
                return "hold"
            self.buf, self.after_bare = head.removeprefix(QWEN_CLOSE), False
        if not self.in_bare:
            at = bare_call_start(self.buf, QWEN_OPEN)
            self.segment = at == HOLD
            if at < 0:
                return "hold" if at == HOLD else "text"
            self._release(out, self.buf[: len(self.buf) - len(self.buf.lstrip())])  # a line break stays
            self.buf, self.in_bare = self.buf[at:], True  # the junk before the JSON is dropped
        try:
            obj, end = _DECODER.raw_decode(self.buf)
        except json.JSONDecodeError:
            return "hold"  # not complete yet; finish() decides if it never is
        call = _call_of(obj, "arguments")
        call = call if call is not None and call.name in self.names else None
        self._call_or_bad(out, call, self.buf[:end])
        self.calls += call is not None
        self.buf, self.in_bare, self.after_bare, self.segment = self.buf[end:], False, True, True
        return "call"

    def _call_or_bad(self, out: list[str | ToolCall], call: ToolCall | None, text: str) -> None:
        if call is not None:
            out.append(call)
        elif self.bad_as_text:
            out.append(text)
        else:
            self.bad.append(text)

    def _release(self, out: list[str | ToolCall], text: str) -> None:
        """Text between or after calls is whitespace the template put there: only real text is content."""
        if text and (not self.calls or text.strip()):
            out.append(text)

    def _llama(self, final: bool) -> list[str | ToolCall]:
        if not self.decided:
            head = self.buf.lstrip()
            if not head or (PYTHON_TAG.startswith(head) and not final):
                return []
            self.decided, self.in_call = True, head.startswith(("{", PYTHON_TAG))
        if not self.in_call:
            text, self.buf = self.buf, ""
            return [text] if text else []
        if not final:
            return []  # a call is released whole, at the end of the answer
        calls, text, self.buf = _llama_calls(self.buf), self.buf, ""
        self.calls += len(calls or [])
        if calls:
            return list(calls)
        out: list[str | ToolCall] = []
        self._call_or_bad(out, None, text)
        return out


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def forced_prefix(fmt: ToolFormat, name: str | None) -> str:
    """The start of a call an answer is made to begin with (the engine continues from it, so the answer is a call):
    any function for tool_choice "required", the named one for a named tool_choice. Empty for an engine that
    parses calls itself: it gets OpenAI's tool_choice instead (GenParams.force_tool)."""
    if fmt == "openai":
        return ""
    if fmt == "qwen":
        return QWEN_OPEN + '\n{"name": "' + (f'{name}", "arguments": ' if name else "")
    return '{"name": "' + (f'{name}", "parameters": ' if name else "")


async def split_calls(
    chunks: AsyncIterator[Chunk], splitter: CallSplitter, prefix: str = ""
) -> AsyncIterator[Chunk | ToolCall]:
    """An engine's chunks with the model's tool calls taken out: text chunks (token counts kept) and, as each call
    completes, the ToolCall itself (also those the engine parsed itself). `prefix`: text the answer was made to
    start with (see `forced_prefix`)."""
    splitter.feed(prefix)  # the start of a call: held until the call completes
    try:
        async for chunk in chunks:
            parts = [*splitter.feed(chunk.text), *chunk.tool_calls]
            parts += splitter.finish() if chunk.finish_reason else []
            text = ""
            for part in parts:
                if isinstance(part, str):
                    text += part
                    continue
                if text:
                    yield Chunk(text, None, chunk.prompt_tokens, chunk.completion_tokens)
                    text = ""
                yield part
            yield Chunk(text, chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # stops the engine's generation
