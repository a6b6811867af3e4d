"""`kefu eval --suite actions`: τ-bench-style tasks for shop actions against the reference backend (pass^1, pass^k)."""
