"""Output guards: every answer is checked before a customer sees it, streamed or not.

The text passes through in whole sentences. Each finished sentence is checked (PII masked; banned words, forbidden
phrases, promises and claimed actions, numbers beyond guard.policy_limits, other identities, the system prompt,
repetition); a clean one is released, a violating one is dropped with everything after it, generation stops and the
answer ends with whole sentences in the customer's language (kefu.guard.replace), closed with the persona's sign-off.
Before the checks, a rule copied from an excerpt with a number or day changed gets the excerpt's back, and the
persona's misspelt name its own (kefu.guard.copied); after them, a sentence restating a list item the customer did
not ask about is dropped (kefu.guard.items). Reasoning (<think>) is cut first. Every decision looks at a fixed unit
of the text, so the final answer does not depend on how the stream was chunked: `guard_answer(text)` equals what an
AnswerGuard fed any chunking of `text` releases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kefu.config import KefuConfig, PersonaConfig, PIIConfig
from kefu.data.persona_prompt import sign_off
from kefu.data.pii import DEFAULT_PLACEHOLDERS, find_pii
from kefu.guard import repeat
from kefu.guard.copied import excerpt_sentences, own_name, restored
from kefu.guard.credentials import find_secret_requests
from kefu.guard.findings import Finding, normalise_with_map
from kefu.guard.identity import find_identity, own_names
from kefu.guard.items import list_items, off_item
from kefu.guard.leak import LEAK_CHARS, covered, scaffold_ngrams
from kefu.guard.notices import greeting, notice
from kefu.guard.promises import check_limits, find_promises
from kefu.guard.replace import Violation, closest_policy, replacement, says_unanswered
from kefu.guard.think import ThinkFilter
from kefu.guard.words import find_banned

# A sentence ends at 。！？!?；; or a newline (with any closing quotes and the spaces after), or at a full stop
# followed by a space ("3.5" and "www.x.com" go on). It is final only once a character follows the match.
_SENTENCE_END = re.compile(r"(?:[。！？!?；;\n…]+|\.(?=[”’\"')\]」』）]*\s))[”’\"')\]」』）]*\s*")
_CLAUSE_PUNCT = re.compile(r"^[\s，,、：:；;。.！!？?]*$")
# Hits where the customer got other words than the model wrote, and better ones: a restored copy, a dropped
# off-item sentence or forbidden clause, a notice for an answer the guards emptied. Masking and removed reasoning
# change the form, not the answer.
REWRITES = frozenset({"copy", "off_item", "forbidden_phrase", "banned_word", "empty"})


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
    own_contacts: frozenset[str] = frozenset()  # the shop's own phone numbers and e-mails (digits / casefolded)
    think_open: bool = False  # the prompt itself opened a <think> block: the answer starts inside reasoning

    @classmethod
    def from_config(cls, cfg: KefuConfig, system_prompt: str) -> Policy:
        """Raises KefuError for an unknown guard.policy_limits key (at startup, not on the first answer)."""
        p = cfg.persona
        check_limits("", cfg.guard.policy_limits)
        return cls(
            persona=p,
            limits=dict(cfg.guard.policy_limits),
            banned_words=tuple(cfg.guard.banned_words),
            forbidden_phrases=tuple(p.forbidden_phrases),
            block_promises=cfg.guard.block_promises,
            pii=cfg.data.pii if cfg.guard.mask_pii else None,
            own_names=own_names(p),
            prompt_ngrams=scaffold_ngrams(system_prompt, p),
            own_contacts=contact_keys(" ".join((p.hours, p.hours_en, p.handoff, p.handoff_en, system_prompt))),
        )


def _contact_key(text: str) -> str:
    """A phone number by its digits ("028-6150-3377" = "02861503377"), an e-mail casefolded."""
    digits = re.sub(r"\D", "", text)
    return digits if "@" not in text and digits else text.strip().casefold()


def contact_keys(text: str) -> frozenset[str]:
    """The phone numbers and e-mails written in `text` (the shop's own: persona, system prompt, KB excerpts)."""
    return frozenset(_contact_key(s.value) for s in find_pii(text, ("phone", "email")))


@dataclass
class _State:
    pending: str = ""  # visible text of the sentence in progress
    consumed: int = 0  # visible characters before `pending`
    clause_start: int = 0  # where in `pending` the clause not yet given to the repeat watch starts
    probed: int = 0  # length of `pending` up to which loops without punctuation were looked for
    released: list[str] = field(default_factory=list)
    leaked: int = 0  # characters of released text found in the system prompt's scaffolding
    leak_tail: str = ""  # the end of the text checked so far, so that n-grams run across sentences


class AnswerGuard:
    """One per answer: feed() the model's text as it streams and show what it returns; when `stopped` turns True,
    stop generating; finish() returns what is left to show (the rest, or the replacement)."""

    def __init__(self, policy: Policy, lang: str, excerpts: Sequence[str] = (), question: str = "") -> None:
        self.policy, self.lang, self.excerpts = policy, ("en" if lang == "en" else "zh"), tuple(excerpts)
        self.question = question
        self._items = list_items(self.excerpts) if question else []
        self._copied = excerpt_sentences(self.excerpts)
        # The shop's hotline in an answer is what the customer asked for, not their personal data.
        self._own_contacts = policy.own_contacts | contact_keys("\n".join(self.excerpts))
        self.stopped = False
        self.hits: list[str] = []
        self.details: list[str] = []  # one line per finding, for the audit event
        self._think = ThinkFilter(inside=policy.think_open)
        self._repeat = repeat.RepeatWatch(greeting(policy.persona, self.lang))
        self._s = _State()
        self._tail = ""  # the replacement, once stopped
        self._finished = False

    # ------------------------------------------------------------------ streaming
    def feed(self, piece: str) -> str:
        """Text that has passed every check and may be shown now ('' while a sentence is still being checked)."""
        if self.stopped or self._finished:
            return ""
        return self._take(self._think.feed(piece), final=False)

    def finish(self) -> str:
        """Whatever is left to show at the end: the last sentence when it passes, or the replacement."""
        if self._finished:
            return ""
        self._finished = True
        out = "" if self.stopped else self._take(self._think.finish(), final=True)
        if not self.stopped:
            self._note_think(upto=None)
            if not self._s.released and self.hits:  # the guards left nothing at all (only reasoning, say)
                self._hit("empty", "nothing left to show")
                self._tail = self._joined(notice(self.policy.persona, "no_match", self.lang))
        return out + self._tail

    @property
    def text(self) -> str:
        """Everything released so far (not counting a replacement)."""
        return "".join(self._s.released)

    @property
    def rewrote(self) -> bool:
        """Whether the answer shown is the guard's, not the model's: replaced (stopped) or repaired. The model's own
        text is then the flywheel's 'rejected' side of a preference pair."""
        return self.stopped or not REWRITES.isdisjoint(self.hits)

    # ------------------------------------------------------------------ sentences
    def _take(self, visible: str, final: bool) -> str:
        s = self._s
        s.pending += visible
        out: list[str] = []
        while not self.stopped:
            m = _SENTENCE_END.search(s.pending)
            if m is None or (m.end() == len(s.pending) and not final):
                if final and s.pending:
                    out.append(self._sentence(s.pending))
                else:
                    self._watch_unfinished(s.pending, final)
                break
            out.append(self._sentence(s.pending[: m.end()]))
        return "".join(out)

    def _sentence(self, sent: str) -> str:
        """Check one finished sentence (consumed from pending); its released form, or '' (dropped or stopped)."""
        s = self._s
        s.pending = s.pending[len(sent) :]
        self._watch_unfinished(sent, final=True)
        s.clause_start = s.probed = 0
        s.consumed += len(sent)
        if self.stopped:
            return ""
        self._note_think(upto=s.consumed)
        if not s.released:
            sent = sent.lstrip()
        if not sent.strip():
            return ""
        if self._repeat.sentence_repeats(sent):
            self._stop_repeating("sentence repeated", at=0)
            return ""
        return self._check(sent)

    def _watch_unfinished(self, text: str, final: bool) -> None:
        """Repetition inside a sentence: identical clauses in a row, or a loop with no punctuation at all."""
        s = self._s
        ends = [m.end() for m in repeat.CLAUSE_END.finditer(text, s.clause_start)] + ([len(text)] if final else [])
        for end in ends:
            clause, s.clause_start = text[s.clause_start : end], end
            if self._repeat.clause(clause):
                self._stop_repeating("clause repeated", at=end)
                return
        while s.probed + repeat.PROBE_EVERY <= len(text):
            s.probed += repeat.PROBE_EVERY
            if repeat.runaway(text[: s.probed]):
                self._stop_repeating("loop without punctuation", at=s.probed)
                return
        if final and s.probed < len(text) and len(text) >= repeat.SHORTEST_RUNAWAY and repeat.runaway(text):
            self._stop_repeating("loop without punctuation", at=len(text))

    def _check(self, sent: str) -> str:
        p = self.policy
        if p.pii is not None:
            masked = self._mask(sent)
            if masked != sent:
                self._hit("pii", "pii masked")
            sent = masked
        # A rule copied with a number or day changed is shown as the excerpt says it; the name as the persona's.
        fixed = own_name(restored(sent, self._copied) if self._copied else sent, self.policy.persona.name)
        if fixed != sent:
            self._hit("copy", f"copy restored: {sent.strip()[:40]}")
        sent = fixed
        # The rules see the sentence before a forbidden clause is dropped: "保证明天到，" is a promise to replace,
        # not just words to leave out.
        violations = self._rules(sent)
        kept, word_violations = self._words(sent)
        if violations or word_violations:
            self._stop(violations + word_violations)
            return ""
        if self._items and off_item(kept, self.question, self._items):
            kept = self._off_item(kept)
        if not kept:
            return ""
        sent = kept
        self._repeat.accept(sent)
        self._s.released.append(sent)
        return sent

    def _off_item(self, sent: str) -> str:
        """What is left of a sentence restating a list item the customer did not ask about: the greeting that
        opened the answer, and its citation markers (the item asked about may have come before it, uncited)."""
        self._hit("off_item", f"off_item: {sent.strip()[:40]}")
        marks = [m for m in dict.fromkeys(repeat.CITATION.findall(sent)) if m not in self.text]
        return self._opening(sent.lstrip()) + "".join(marks)

    def _opening(self, dropped: str) -> str:
        """The greeting, when the dropped sentence opened the answer with it ("您好，抱歉，…"): the answer still opens
        with it; '' otherwise."""
        hello = greeting(self.policy.persona, self.lang)
        return hello if not self.text and hello and dropped.startswith(hello.rstrip(" ，,")) else ""

    def _mask(self, sent: str) -> str:
        """PII masked, except the persona's own names ("我叫小禾" is not a customer's name) and the shop's own phone
        numbers and e-mails (the persona's text and the retrieved excerpts: "热线 028-6150-3377" is the answer)."""
        assert self.policy.pii is not None
        names = [n for n in (self.policy.persona.name, self.policy.persona.name_en) if n.strip() and n in sent]
        for i, name in enumerate(names):
            sent = sent.replace(name, chr(0xE000 + i))
        holders = {**DEFAULT_PLACEHOLDERS, **self.policy.pii.placeholders}
        out, pos = [], 0
        for span in find_pii(sent, self.policy.pii.kinds):
            if span.kind in ("phone", "email") and _contact_key(span.value) in self._own_contacts:
                continue
            out += [sent[pos : span.start], holders[span.kind]]
            pos = span.end
        sent = "".join(out) + sent[pos:]
        for i, name in enumerate(names):
            sent = sent.replace(chr(0xE000 + i), name)
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
        # Full-width digits and letters, zero-width characters: "３０天", "Chat\u200bGPT" read as what they show.
        sent = normalise_with_map(sent)[0]
        found: list[tuple[str, Finding]] = []
        if p.block_promises:
            found += [("promise", f) for f in find_promises(sent)]
        found += [("limit", f) for f in check_limits(sent, p.limits)]
        found += [("identity", f) for f in find_identity(sent, p.own_names)]
        found += [("secret_request", f) for f in find_secret_requests(sent)]
        violations = [Violation(hit, f.rule, f.detail or f.text, sent) for hit, f in found]
        if self.excerpts and says_unanswered(sent) and closest_policy(self.excerpts, self.lang, p.limits):
            violations.append(Violation("unanswered", "unanswered", "an excerpt was shown", sent))
        if p.prompt_ngrams:
            n, self._s.leak_tail = covered(sent, p.prompt_ngrams, self._s.leak_tail)
            self._s.leaked += n
            if self._s.leaked >= LEAK_CHARS:
                violations.append(Violation("system_prompt", "system_prompt", f"{self._s.leaked} characters"))
        return violations

    # ------------------------------------------------------------------ outcomes
    def _hit(self, name: str, detail: str) -> None:
        if name not in self.hits:
            self.hits.append(name)
        self.details.append(detail)

    def _note_think(self, upto: int | None) -> None:
        """The 'think' hit, once, for reasoning cut before visible offset `upto` (None: anywhere)."""
        cut = self._think.first_cut
        if cut is not None and (upto is None or cut < upto) and "think" not in self.hits:
            self._hit("think", "reasoning removed")

    def _stop(self, violations: list[Violation]) -> None:
        for v in violations:
            self._hit(v.hit, f"{v.rule}: {v.detail}")
        self.stopped = True
        p = self.policy
        tail = replacement(p.persona, violations, self.lang, self.excerpts, p.limits)
        self._tail = self._joined(self._opening(violations[0].sentence) + tail)

    def _stop_repeating(self, why: str, at: int) -> None:
        """Stop on a loop found `at` characters into the sentence being checked."""
        self._note_think(upto=self._s.consumed + at)
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
        """`tail` as it follows the released text (a space between English sentences), closed with the persona's
        sign-off: the model's own went with the sentences the replacement stands for."""
        sign = sign_off(self.policy.persona, self.lang)
        if sign and not tail.rstrip().endswith(sign):
            tail = tail.rstrip() + (" " if self.lang == "en" else "") + sign
        done = self.text
        return " " + tail if self.lang == "en" and done and not done[-1].isspace() else tail


def guard_answer(
    text: str, policy: Policy, lang: str, excerpts: Sequence[str] = (), question: str = ""
) -> tuple[str, list[str]]:
    """The whole answer as the customer may see it, and the names of the guards that fired (non-streamed paths)."""
    guard = AnswerGuard(policy, lang, excerpts, question)
    shown = guard.feed(text)
    return shown + guard.finish(), guard.hits
