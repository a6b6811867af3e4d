"""Conversation -> token ids + labels, with the loss on assistant tokens only, for any chat template.

The label mask comes from rendering the conversation incrementally: for every assistant turn we render the
conversation up to that turn with the generation prompt (everything the model is *given*) and up to the end of the
turn (everything it must *produce*). The tokens between the two are the answer, including the end-of-turn token and
excluding the role header. This works for any template as long as it renders conversations as growing prefixes,
which we verify instead of assuming. Tool results (role `tool`) are given, never learned; the assistant's tool calls
are learned like its answers, and an assistant turn of weight 0 is given like a tool result (what the serving
pipeline writes itself, not the model). Rendering goes through kefu.answer.toolcalls.render, the function the local
serving engines use too, so training and serving see the same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kefu.answer.toolcalls import message_of, render
from kefu.data.schema import Conversation
from kefu.errors import KefuError

IGNORE = -100  # label value the cross-entropy loss skips


class SampleTooLong(KefuError):
    """One sample longer than train.max_seq_len; `encode_all` turns many of these into one summary error."""

    def __init__(self, n_tokens: int, max_len: int) -> None:
        super().__init__(f"{n_tokens} tokens > train.max_seq_len={max_len}")
        self.n_tokens = n_tokens


@dataclass(frozen=True)
class Record:
    """A sample plus where it came from, so errors can point at a file and line."""

    conv: Conversation
    where: str


def to_messages(conv: Conversation, *, system: str | None, cot: bool) -> list[dict[str, Any]]:
    """Chat-template messages; `reasoning` is passed only when CoT is on, so the template renders it or not."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn in conv.turns:
        msg = message_of(turn)
        if cot and turn.role == "assistant" and turn.reasoning:
            msg["reasoning"] = turn.reasoning
        messages.append(msg)
    return messages


def _render(
    tokenizer: Any, messages: list[dict[str, Any]], *, prompt: bool, template: str,
    tools: list[dict[str, Any]] | None = None,
) -> str:  # fmt: skip
    try:
        return render(tokenizer, messages, tools, add_generation_prompt=prompt)
    except KefuError:
        raise
    except Exception as e:  # jinja raises TemplateError/TypeError/ValueError for unsupported roles or shapes
        raise KefuError(f"chat template '{template}' cannot render this conversation: {e}") from e


def _ids(tokenizer: Any, text: str) -> list[int]:
    # The rendered text already holds the template's special tokens (BOS included); adding more would double them.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _not_prefix(template: str, turn: int, what: str) -> KefuError:
    return KefuError(
        f"chat template '{template}' does not render conversations as growing prefixes ({what} of assistant turn "
        f"{turn} differs from the full conversation), so the answer tokens cannot be located. Pick a template that "
        "does, e.g. model.template: chatml (or llama3 / gemma / deepseek-r1)."
    )


def _answer_spans(
    tokenizer: Any, messages: list[dict[str, Any]], full: list[int], template: str,
    tools: list[dict[str, Any]] | None = None, learned: set[int] | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """[start, end) token spans of every assistant answer (tool calls included) in `full`; only those of the
    messages in `learned` when given."""
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or (learned is not None and i not in learned):
            continue
        given = _ids(tokenizer, _render(tokenizer, messages[:i], prompt=True, template=template, tools=tools))
        # Whitespace after the end-of-turn token is never generated (decoding stops at the end token): leave it out.
        upto = _render(tokenizer, messages[: i + 1], prompt=False, template=template, tools=tools)
        produced = _ids(tokenizer, upto.rstrip())
        turn = sum(m["role"] == "assistant" for m in messages[: i + 1])
        if full[: len(given)] != given:
            raise _not_prefix(template, turn, "the prompt")
        if full[: len(produced)] != produced or len(produced) <= len(given):
            raise _not_prefix(template, turn, "the answer")
        spans.append((len(given), len(produced)))
    return spans


def _check_reasoning(tokenizer: Any, messages: list[dict[str, Any]], full: list[int], template: str) -> None:
    text = tokenizer.decode(full)
    for msg in messages:
        # Compare a short head: some templates strip or re-space the reasoning text they render.
        head = msg.get("reasoning", "").strip()[:12]
        if head and head not in text:
            raise KefuError(
                f"train.cot is on but chat template '{template}' does not render the assistant's reasoning; "
                "set model.template to one that does (chatml, qwen, deepseek-r1) or turn train.cot off."
            )


def encode_conversation(
    tokenizer: Any, conv: Conversation, *, system: str | None, cot: bool, max_len: int, template: str = "model's own"
) -> dict[str, list[int]]:
    """Token ids and labels (IGNORE everywhere except assistant answers + their end-of-turn token).

    Raises SampleTooLong past `max_len` tokens, and KefuError when the template cannot be split into turns.
    """
    messages = to_messages(conv, system=system, cot=cot)
    offset = len(messages) - len(conv.turns)  # the system message, when there is one
    learned = {i + offset for i, t in enumerate(conv.turns) if t.role == "assistant" and t.weight}
    if not learned:
        raise KefuError("conversation has no assistant answer to train on (none of weight 1)")
    del messages[max(learned) + 1 :]  # what follows the last learned answer teaches nothing
    tools = conv.tools or None
    full = _ids(tokenizer, _render(tokenizer, messages, prompt=False, template=template, tools=tools).rstrip())
    if len(full) > max_len:
        raise SampleTooLong(len(full), max_len)
    if cot:
        _check_reasoning(tokenizer, messages, full, template)
    labels = [IGNORE] * len(full)
    for start, end in _answer_spans(tokenizer, messages, full, template, tools, learned):
        labels[start:end] = full[start:end]
    return {"input_ids": full, "labels": labels}


def where(meta: dict[str, Any], fallback: str) -> str:
    """'file:line' of a record: its original source from meta when known, else the prepared file's line."""
    source, line = meta.get("source"), meta.get("line")
    if source and line:
        return f"{source}:{line} (prepared as {fallback})"
    return f"{source} (prepared as {fallback})" if source else fallback


def encode_all(
    tokenizer: Any,
    records: Sequence[Record],
    *,
    system: str | None,
    cot: bool,
    max_len: int,
    template: str = "model's own",
) -> list[dict[str, list[int]]]:
    """Encode every record; all too-long samples become ONE error that says how many, the first, and the fix."""
    encoded, too_long = [], []
    for rec in records:
        try:
            encoded.append(
                encode_conversation(
                    tokenizer, rec.conv, system=rec.conv.system or system, cot=cot, max_len=max_len, template=template
                )
            )
        except SampleTooLong as e:
            too_long.append((rec.where, e.n_tokens))
        except KefuError as e:
            raise KefuError(f"{rec.where}: {e}") from e
    if too_long:
        first, n = too_long[0]
        longest = max(n for _, n in too_long)
        raise KefuError(
            f"{len(too_long)} of {len(records)} samples exceed train.max_seq_len={max_len} tokens "
            f"(longest {longest}; first at {first}: {n} tokens). Raise train.max_seq_len, or set "
            "data.clean.max_tokens and re-run `kefu data prepare` to drop them."
        )
    return encoded
