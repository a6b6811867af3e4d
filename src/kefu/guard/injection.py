"""Prompt-injection detection for user turns and retrieved documents, and quoting untrusted text into prompts.

Each rule has a weight; the score combines hits as independent evidence (1 - prod(1 - w)), so one strong signal
("ignore previous instructions") crosses the default 0.5 threshold alone and weak ones only together.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from kefu.guard.findings import Finding, normalise_with_map


@dataclass(frozen=True)
class InjectionRule:
    id: str
    weight: float
    pattern: str


INJECTION_RULES: tuple[InjectionRule, ...] = (
    InjectionRule(
        "ignore_instructions",
        0.9,
        r"(?:忽略|无视|忘记|忘掉|跳过|不要理会|抛弃|丢掉|别管)掉?(?:[你我]的?)?(?:之前|以前|上面|前面|先前|所有|全部|以上|原来|原有|原始|系统)?"
        r"的?(?:所有|全部|一切)?的?(?:指令|指示|规则|设定|提示词?|限制|约束|要求|system|prompt)"
        r"|\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|everything\s+)?(?:of\s+)?(?:the\s+|your\s+|my\s+)?"
        r"(?:previous|prior|above|earlier|preceding|original|initial|system|safety)?\s*"
        r"(?:instructions?|prompts?|rules|directions|guidelines|guardrails|constraints|programming)\b",
    ),
    InjectionRule(
        "role_override",
        0.7,
        r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must|should)\b|\bpretend\s+(?:to\s+be|you\s+are)\b"
        r"|\b(?:act|behave)\s+as\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|different)\b"
        r"|\brole-?play\s+as\b|\bDAN\b|\bdeveloper\s+mode\b|\bjailbr(?:eak|oken)\b|\bno\s+(?:longer\s+)?bound\s+by\b"
        r"|你现在是|从现在(?:开始|起)[，,]?你|你的新(?:身份|角色|任务|指令)|(?:请|你)来?扮演|扮演(?:我的|一个|一名)|假装你是|假设你是|角色扮演"
        r"|(?:开发者|上帝|越狱|调试)模式|越狱|不受(?:任何)?(?:限制|约束|规则)",
    ),
    InjectionRule(
        "prompt_leak",
        0.8,
        r"\bsystem\s+prompt\b|\b(?:print|show|reveal|repeat|output|display|tell\s+me|give\s+me|leak|dump)\s+(?:me\s+)?"
        r"(?:all\s+)?(?:your\s+(?:initial\s+|original\s+|hidden\s+|secret\s+|system\s+|full\s+)?"
        r"|the\s+(?:initial|original|hidden|secret|system|full)\s+)(?:instructions|prompt|rules|system\s+message|configuration)\b"
        r"|系统提示词?|(?:输出|打印|显示|告诉我|重复|泄露|给我看|说出)(?:一下)?你的(?:系统|原始|初始|隐藏)?"
        r"(?:提示词|指令|设定|规则|prompt|配置)",
    ),
    InjectionRule(
        "fake_role_marker",
        0.6,
        r"<\|im_start\|>|<\|im_end\|>|<\|(?:system|user|assistant|endoftext|eot_id|start_header_id)\|>|\[/?INST\]"
        r"|<</?SYS>>|^\s*#{2,}\s*(?:system|instruction)s?\b|^\s*(?:system|assistant)\s*[:：]|【系统】|^\s*系统[:：]",
    ),
    InjectionRule(
        "new_instructions",
        0.5,
        r"\bnew\s+instructions?\b|\bimportant\s*:\s*(?:ignore|you\s+must)|\binstead,?\s+(?:you\s+)?(?:must|should)\s+"
        r"(?:say|reply|answer|respond)|新的?指令|新任务[:：]|(?:必须|只能)(?:回答|回复|输出|说)[“\"「]",
    ),
    InjectionRule(
        "addresses_the_model",
        0.5,
        r"\b(?:AI|assistant|chatbot|language\s+model|LLM|GPT)\s*[,:：]\s*(?:you\s+)?(?:must|should|shall|will|need\s+to)\b"
        r"|(?:AI|助手|机器人|模型|客服)[，,:：]\s*你?(?:必须|务必|应该|需要)(?:告诉|回答|回复|输出|说)",
    ),
)
_COMPILED = tuple((r, re.compile(r.pattern, re.I | re.M)) for r in INJECTION_RULES)
_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")


@dataclass
class InjectionResult:
    """score in [0, 1]; reasons are rule ids (deduplicated, in order of first hit); findings give the spans."""

    score: float
    reasons: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def flagged(self, threshold: float = 0.5) -> bool:
        return self.score >= threshold


def _rule_hits(text: str) -> list[Finding]:
    norm, index = normalise_with_map(text)
    hits = []
    for rule, rx in _COMPILED:
        for m in rx.finditer(norm):
            start, end = index[m.start()], index[max(m.end() - 1, m.start())] + 1
            hits.append(Finding(rule.id, start, end, text[start:end]))
    return hits


def _decoded_blob_hits(text: str) -> list[Finding]:
    """Base64 blobs that decode to readable text: an instruction hidden from plain-text filters."""
    hits = []
    for m in _BLOB.finditer(text):
        blob = m.group()
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if not all(c.isprintable() or c.isspace() for c in decoded):
            continue
        rule = "encoded_instructions" if _rule_hits(decoded) else "encoded_text"
        hits.append(Finding(rule, m.start(), m.end(), blob, detail=decoded[:200]))
    return hits


_WEIGHTS = {r.id: r.weight for r in INJECTION_RULES} | {"encoded_instructions": 0.9, "encoded_text": 0.3}


def detect_injection(text: str) -> InjectionResult:
    """Score how much `text` (a user turn or a retrieved document) tries to steer the model instead of informing it."""
    findings = sorted(_rule_hits(text) + _decoded_blob_hits(text), key=lambda f: f.start)
    reasons = list(dict.fromkeys(f.rule for f in findings))
    miss = 1.0
    for rule_id in reasons:
        miss *= 1.0 - _WEIGHTS[rule_id]
    return InjectionResult(round(1.0 - miss, 4), reasons, findings)


def is_injection(text: str, threshold: float = 0.5) -> bool:
    return detect_injection(text).flagged(threshold)


_SPECIAL_TOKEN = re.compile(r"<\|([^|<>]{1,40})\|>|\[(/?INST)\]|<<(/?SYS)>>", re.I)


def quote_untrusted(text: str, label: str = "document") -> str:
    """Wrap untrusted text (a retrieved document, a web page) as quoted data for a prompt.

    The text goes between <label> and </label> lines. Anything inside that could end the quote early or pose as
    a chat-template turn is defused: our own tags, chat special tokens (<|im_start|>, [INST], <<SYS>>) and Markdown
    code fences (``` becomes ʼʼʼ), so the model sees them as plain text of the document.
    """
    tag = re.escape(label)
    body = re.sub(rf"<(/?\s*{tag})\b", r"‹\1", text, flags=re.I)
    body = _SPECIAL_TOKEN.sub(lambda m: "‹" + (m.group(1) or m.group(2) or m.group(3)) + "›", body)
    body = re.sub(r"`{3,}|~{3,}", lambda m: "ʼ" * len(m.group()), body)
    return f"<{label}>\n{body}\n</{label}>"
