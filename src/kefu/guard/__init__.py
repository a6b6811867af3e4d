"""Guard rules shared by evaluation and serving: pure functions over text, no I/O, no model.

words (banned words), promises (over-promises, policy limits), injection (prompt injection, quoting untrusted text),
handoff (when to hand to a human, whether an answer does). PII masking lives in kefu.data.pii.
"""
