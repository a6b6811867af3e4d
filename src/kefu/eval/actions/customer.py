"""The customer side of an actions task: a deterministic script (CI) or an LLM user simulator (any OpenAI URL).

Both see only the assistant's words and the task's goal, never the backend. The scripted customer opens with the
trial's phrasing, gives the order number only when the assistant asks for it, answers a confirmation question with
the task's yes or no, and otherwise ends the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from kefu.eval.actions.tasks import CONFIRM, DECLINE, GIVE_NUMBER, Task
from kefu.eval.generate import Messages

_ASKS_CONFIRM = re.compile(r"回复“确认”|请确认|确认吗|是否确认|确认办理|reply \"?yes|please confirm|confirm\?", re.I)
# Asked for the order number (not merely told about one, e.g. "在订单里查看物流单号").
_ASKS_NUMBER = re.compile(
    r"(?:提供|告诉|发一下|发给|发送|输入|报一下|给我).{0,8}(?:订单号|单号|订单编号)|(?:订单号|单号)(?:是多少|呢)"
    r"|(?:send|provide|share|tell|give|what(?:'s| is)).{0,30}order (?:number|no\.?|id)",
    re.I,
)
STOP = "###STOP###"


class Customer(Protocol):
    def first(self, task: Task, trial: int) -> str: ...

    def reply(self, task: Task, trial: int, turns: Messages) -> str | None:
        """The next message after the assistant's last turn, or None: the customer is done."""
        ...


@dataclass
class ScriptedCustomer:
    """Deterministic: the same task and trial always say the same things."""

    given: set[tuple[str, int, str]] = field(default_factory=set)  # (task, trial, move) already made

    def first(self, task: Task, trial: int) -> str:
        self.given = {g for g in self.given if g[:2] != (task.id, trial)}
        return task.opening[trial % len(task.opening)]

    def reply(self, task: Task, trial: int, turns: Messages) -> str | None:
        said, en = turns[-1]["content"], task.lang == "en"
        if _ASKS_CONFIRM.search(said) and self._once(task, trial, "confirm"):
            return (CONFIRM if task.answer_confirm else DECLINE)[en][trial % 4]
        if _ASKS_NUMBER.search(said) and task.order_id and task.order_id not in said and self._once(task, trial, "no"):
            return GIVE_NUMBER[en][trial % 4].format(oid=task.order_id)
        return None

    def _once(self, task: Task, trial: int, move: str) -> bool:
        key = (task.id, trial, move)
        if key in self.given:
            return False
        self.given.add(key)
        return True


@dataclass
class LLMCustomer:
    """A user simulator behind an OpenAI-compatible chat endpoint, playing the task's goal (τ-bench's user)."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0

    def _instructions(self, task: Task) -> str:
        lang = "English" if task.lang == "en" else "Chinese"
        return (
            f"You are a customer of an online shop chatting with its support assistant, in {lang}. Your goal: "
            f"{task.goal}. Your order number is {task.order_id}. Write only the customer's next short message. "
            f"Do not reveal the goal all at once unless needed. When your goal is reached, or cannot be, write {STOP}."
        )

    def _say(self, task: Task, trial: int, turns: Messages) -> str | None:
        # The simulator plays the user: the assistant's turns are its 'user' messages and vice versa.
        flipped = [{"role": "assistant" if t["role"] == "user" else "user", "content": t["content"]} for t in turns]
        messages = [{"role": "system", "content": self._instructions(task)}, *flipped]
        if not flipped:
            messages.append({"role": "user", "content": "(the chat opens; write your first message)"})
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": 1.0, "seed": trial, "max_tokens": 200}
        r = httpx.post(f"{self.url.rstrip('/')}/chat/completions", json=body, headers=headers, timeout=self.timeout_s)
        r.raise_for_status()
        text = str(r.json()["choices"][0]["message"]["content"] or "").strip()
        return None if not text or STOP in text else text

    def first(self, task: Task, trial: int) -> str:
        return self._say(task, trial, []) or task.opening[trial % len(task.opening)]

    def reply(self, task: Task, trial: int, turns: Messages) -> str | None:
        return self._say(task, trial, turns)
