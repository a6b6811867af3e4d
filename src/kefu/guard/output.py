"""Output guards: every answer is checked before a customer sees it, streamed or not.

The text passes through in whole sentences. Each finished sentence is checked (PII masked; banned words, forbidden
phrases, promises and claimed actions, numbers beyond guard.policy_limits, other identities, the system prompt,
repetition); a clean one is released, a violating one is dropped with everything after it, generation stops and the
answer ends with whole sentences in the customer's language (kefu.guard.replace). Reasoning (<think>) is cut first.
Every decision looks at a fixed unit of the text, so the final answer does not depend on how the stream was chunked:
`guard_answer(text)` equals what an AnswerGuard fed any chunking of `text` releases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kefu.config import KefuConfig, PersonaConfig, PIIConfig
from kefu.data.pii import mask
from kefu.guard import repeat
from kefu.guard.findings import Finding
from kefu.guard.identity import find_identity, own_names
from kefu.guard.leak import LEAK_CHARS, covered, scaffold_ngrams
from kefu.guard.notices import greeting, notice
from kefu.guard.promises import check_limits, find_promises
from kefu.guard.replace import Violation, replacement
from kefu.guard.think import ThinkFilter
from kefu.guard.words import find_banned

# A sentence ends at 。！？!?；; or a newline (with any closing quotes and the spaces after), or at a full stop
# followed by a space ("3.5" and "www.x.com" go on). It is final only once a character follows the match.
_SENTENCE_END = re.compile(r"(?:[。！？!?；;\n…]+|\.(?=[”’\"')\]」』）]*\s))[”’\"')\]」』）]*\s*")
_CLAUSE_PUNCT = re.compile(r"^[\s，,、：:；;。.！!？?]*$")


@dataclass(frozen=True)
class Policy:
    """Everything the output guards need, built once per config (and system prompt)."""

    persona: PersonaConfig
    limits: dict[str, float]
    banned_words: tuple[str, ...]
    forbidden_phrases: tuple[str, ...]
    block_promises: bool
    pii: PIIConfig | None
    own_names: tuple[str, ...]
    prompt_ngrams: frozenset[str]
    think_open: bool = False  # the prompt itself opened a <think> block: the answer starts inside reasoning

    @classmethod
    def from_config(cls, cfg: KefuConfig, system_prompt: str) -> Policy:
        p = cfg.persona
        return cls(
            persona=p,
            limits=dict(cfg.guard.policy_limits),
            banned_words=tuple(cfg.guard.banned_words),
            forbidden_phrases=tuple(p.forbidden_phrases),
            block_promises=cfg.guard.block_promises,
            pii=cfg.data.pii if cfg.guard.mask_pii else None,
            own_names=own_names(p),
            prompt_ngrams=scaffold_ngrams(system_prompt, p),
        )


@dataclass
class _State:
    pending: str = ""  # visible text of the sentence in progress
    clauses_seen: int = 0  # finished clauses of `pending` already given to the repeat watch
    probed: int = 0  # length of `pending` up to which loops without punctuation were looked for
    released: list[str] = field(default_factory=list)
    leaked: int = 0  # characters of released text found in the system prompt's scaffolding


class AnswerGuard:
    """One per answer: feed() the model's text as it streams and show what it returns; when `stopped` turns True,
    stop generating; finish() returns what is left to show (the rest, or the replacement)."""

    def __init__(self, policy: Policy, lang: str, excerpts: Sequence[str] = ()) -> None:
        self.policy, self.lang, self.excerpts = policy, ("en" if lang == "en" else "zh"), tuple(excerpts)
        self.stopped = False
        self.hits: list[str] = []
        self.details: list[str] = []  # one line per finding, for the audit event
        self._think = ThinkFilter(inside=policy.think_open)
        self._repeat = repeat.RepeatWatch()
        self._s = _State()
        self._tail = ""  # the replacement, once stopped
        self._finished = False

    # ------------------------------------------------------------------ streaming
    def feed(self, piece: str) -> str:
        """Text that has passed every check and may be shown now ('' while a sentence is still being checked)."""
        if self.stopped or self._finished:
            return ""
        visible = self._think.feed(piece)
        self._note_think()
        return self._take(visible, final=False)

    def finish(self) -> str:
        """Whatever is left to show at the end: the last sentence when it passes, or the replacement."""
        if self._finished:
            return ""
        self._finished = True
        out = "" if self.stopped else self._take(self._think.finish(), final=True)
        self._note_think()
        return out + self._tail

    @property
    def text(self) -> str:
        """Everything released so far (not counting a replacement)."""
        return "".join(self._s.released)

    # ------------------------------------------------------------------ sentences
    def _take(self, visible: str, final: bool) -> str:
        s = self._s
        s.pending += visible
        out: list[str] = []
        while not self.stopped:
            m = _SENTENCE_END.search(s.pending)
            if m is None or (m.end() == len(s.pending) and not final):
                if final and s.pending:
                    out.append(self._sentence(s.pending, final=True))
                else:
                    self._watch_unfinished(s.pending, final)
                break
            out.append(self._sentence(s.pending[: m.end()], final))
        return "".join(out)

    def _sentence(self, sent: str, final: bool) -> str:
        """Check one finished sentence (consumed from pending); its released form, or '' (dropped or stopped)."""
        s = self._s
        s.pending = s.pending[len(sent) :]
        self._watch_unfinished(sent, final=True)
        s.clauses_seen = s.probed = 0
        if self.stopped:
            return ""
        if not s.released:
            sent = sent.lstrip()
        if not sent.strip():
            return ""
        if self._repeat.sentence_repeats(sent):
            self._stop_repeating("sentence repeated")
            return ""
        return self._check(sent)

    def _watch_unfinished(self, text: str, final: bool) -> None:
        """Repetition inside a sentence: identical clauses in a row, or a loop with no punctuation at all."""
        s = self._s
        ends = [m.end() for m in repeat.CLAUSE_END.finditer(text)] + ([len(text)] if final else [])
        starts = [0, *ends]
        for i in range(s.clauses_seen, len(ends)):
            if self._repeat.clause(text[starts[i] : ends[i]]):
                self._stop_repeating("clause repeated")
                return
        s.clauses_seen = len(ends)
        while s.probed + repeat.PROBE_EVERY <= len(text):
            s.probed += repeat.PROBE_EVERY
            if repeat.runaway(text[: s.probed]):
                self._stop_repeating("loop without punctuation")
                return
        if final and s.probed < len(text) and repeat.runaway(text):
            self._stop_repeating("loop without punctuation")

    def _check(self, sent: str) -> str:
        p = self.policy
        if p.pii is not None:
            masked = mask(sent, p.pii)
            if masked != sent:
                self._hit("pii", "pii masked")
            sent = masked
        sent, violations = self._words(sent)
        if not sent:
            return ""
        violations += self._rules(sent)
        if violations:
            self._stop(violations)
            return ""
        self._repeat.accept(sent)
        self._s.released.append(sent)
        return sent

    def _words(self, sent: str) -> tuple[str, list[Violation]]:
        """Banned words and forbidden phrases: a clause that is nothing but one ("亲亲，") is dropped and the answer
        goes on; one inside a clause that says more is a violation."""
        violations: list[Violation] = []
        for hit, words in (
            ("forbidden_phrase", self.policy.forbidden_phrases),
            ("banned_word", self.policy.banned_words),
        ):
            for f in reversed(find_banned(sent, words)):
                start = max((m.end() for m in repeat.CLAUSE_END.finditer(sent, 0, f.start)), default=0)
                end_m = repeat.CLAUSE_END.search(sent, f.end)
                end = end_m.end() if end_m else len(sent)
                self._hit(hit, f"{hit}: {f.text}")
                if _CLAUSE_PUNCT.match(sent[start : f.start] + sent[f.end : end]):
                    sent = sent[:start] + sent[end:]
                else:
                    violations.append(Violation(hit, hit, f.text))
        return (sent if sent.strip(" ，,、") else ""), violations

    def _rules(self, sent: str) -> list[Violation]:
        p = self.policy
        found: list[tuple[str, Finding]] = []
        if p.block_promises:
            found += [("promise", f) for f in find_promises(sent)]
        found += [("limit", f) for f in check_limits(sent, p.limits)]
        found += [("identity", f) for f in find_identity(sent, p.own_names)]
        violations = [Violation(hit, f.rule, f.detail or f.text) for hit, f in found]
        if p.prompt_ngrams:
            self._s.leaked += covered(sent, p.prompt_ngrams)
            if self._s.leaked >= LEAK_CHARS:
                violations.append(Violation("system_prompt", "system_prompt", f"{self._s.leaked} characters"))
        return violations

    # ------------------------------------------------------------------ outcomes
    def _hit(self, name: str, detail: str) -> None:
        if name not in self.hits:
            self.hits.append(name)
        self.details.append(detail)

    def _note_think(self) -> None:
        if self._think.seen and "think" not in self.hits:
            self._hit("think", "reasoning removed")

    def _stop(self, violations: list[Violation]) -> None:
        for v in violations:
            self._hit(v.hit, f"{v.rule}: {v.detail}")
        self.stopped = True
        p = self.policy
        self._tail = self._joined(replacement(p.persona, violations, self.lang, self.excerpts, p.limits))

    def _stop_repeating(self, why: str) -> None:
        self._hit("repetition", why)
        self.stopped = True
        self._s.pending = ""
        if not self._has_content():
            self._tail = self._joined(notice(self.policy.persona, "handoff", self.lang))

    def _has_content(self) -> bool:
        """Whether the released text says something beyond the greeting."""
        said = repeat.key(self.text)
        return len(said.replace(repeat.key(greeting(self.policy.persona, self.lang)), "", 1)) >= repeat.SHORT

    def _joined(self, tail: str) -> str:
        """`tail` as it follows the released text: a space between English sentences."""
        done = self.text
        return " " + tail if self.lang == "en" and done and not done[-1].isspace() else tail


def guard_answer(text: str, policy: Policy, lang: str, excerpts: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The whole answer as the customer may see it, and the names of the guards that fired (non-streamed paths)."""
    guard = AnswerGuard(policy, lang, excerpts)
    shown = guard.feed(text)
    return shown + guard.finish(), guard.hits
