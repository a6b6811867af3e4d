"""The records of one customer turn as the answer pipeline passes them along: `Prepared` (what the pipeline decided
and the prompt it built), `Outcome` (one generated choice) and `Answer` (the whole turn, for eval, chat and the
demo). Plain data, no behaviour: the pipeline (kefu.answer.pipeline) and its shop-action step (kefu.answer.acting)
both fill them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kefu.answer.actions import ActionCall
from kefu.answer.confirm import Pending
from kefu.answer.knowledge import Context
from kefu.answer.prompt import Messages
from kefu.answer.toolcalls import ToolFormat
from kefu.data.schema import ToolCall
from kefu.guard.input import InputVerdict

Action = Literal["answer", "handoff", "refuse", "no_match", "with_agent", "act"]  # act: a shop action answered


@dataclass
class Prepared:
    """One turn as the pipeline decided it: what to do, the masked conversation and, to answer, the prompt."""

    turns: Messages  # the conversation with every customer text PII-masked, newest user turn last
    lang: str
    started: float
    action: Action = "answer"
    reason: str | None = None  # why it goes to a human: "user" or "rule:NAME"
    notice: str = ""  # the text sent instead of an answer (action != "answer")
    verdict: InputVerdict = field(default_factory=InputVerdict)
    context: Context = field(default_factory=Context)
    messages: Messages = field(default_factory=list)  # what the engine is asked
    customer_id: str | None = None  # the customer the shop's front end authenticated (shop actions only)
    # The customer's own messages unmasked (only where the model may call actions): the model sees masked turns, so
    # its calls quote placeholders ("[ADDRESS]"); a call gets back what this customer typed, never anyone else's.
    said: list[str] = field(default_factory=list)
    call: ActionCall | None = None  # a shop action this turn runs instead of generating
    actions: list[dict[str, Any]] = field(default_factory=list)  # audit records of the actions run
    # A client's own tools (OpenAI `tools`): the model sees them and its calls go back to the client, not run here.
    tools: list[dict[str, Any]] | None = None
    tool_format: ToolFormat | None = None  # how the engine's model writes calls (set with tools or tool turns)
    one_call: bool = False  # parallel_tool_calls false: the answer ends at its first call
    force_tool: bool | str = False  # tool_choice "required" (True) or the function named: the answer is a call
    forced: str = ""  # the start of a call the answer is made to begin with (local engines, for force_tool)
    pending: Pending | None = None  # a write waiting for the customer's yes: the caller keeps it for the next turn
    declined: Pending | None = None  # the write that waited and this message did not confirm (not run)
    escalate: str | None = None  # an action's rule hands the conversation to a human after this answer


@dataclass
class Outcome:
    """One generated choice: the text released to the customer and how it went."""

    text: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    guard_hits: list[str] = field(default_factory=list)  # names of the output guards that fired
    guard_details: list[str] = field(default_factory=list)  # one line per finding, for the audit event
    original: str | None = None  # what the model said when a guard replaced it (PII-masked): a DPO 'rejected'
    ttft: float | None = None  # seconds from Prepared.started to the first released text
    total: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)  # calls of the client's tools the model made


@dataclass
class Answer:
    """A whole turn's result, as eval, chat and the demo use it."""

    text: str
    action: Action
    lang: str
    handoff: str | None  # "user", "rule:NAME", "model", or None
    citations: list[dict[str, Any]]
    guard: dict[str, list[str]]  # {"input": rule reasons, "output": guard names}
    kb_version: str
    ttft_s: float | None
    total_s: float
    completion_tokens: int
    finish_reason: str
    actions: list[dict[str, Any]] = field(default_factory=list)  # shop actions run (ActionResult.record())
    pending: Pending | None = None  # a write asked to be confirmed: pass it to the next turn's answer()
