"""Guard rules shared by evaluation and serving: pure functions over text, no I/O, no model.

Entry points: output (Policy, AnswerGuard, guard_answer: every answer before a customer sees it), input
(check_input, document_injection), notices (every fixed text, in the customer's language), lang (detect_lang).
Rules: words (banned words), promises (over-promises, policy limits), identity, leak (system prompt), repeat,
think (reasoning), injection (prompt injection, quoting untrusted text), handoff (when to hand to a human, whether
an answer does). PII masking lives in kefu.data.pii.
"""
