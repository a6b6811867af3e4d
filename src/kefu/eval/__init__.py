"""Evaluation: customer-service metrics, a readable report, and the promotion gate.

API: `kefu.eval.runner.run_eval(cfg, Target(...), out_dir) -> EvalResult` and
`kefu.eval.compare.run_compare(a_dir, b_dir, cfg.eval.gate, out_dir) -> CompareResult`. Definitions: docs/metrics.md.
"""
