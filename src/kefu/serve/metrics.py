"""Prometheus metrics of one app (own registry, so several apps in one test process do not collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0)
_TPOT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "kefu_requests",
            "Answered requests by route, status and model version",
            ["route", "status", "model_version"],
            registry=r,
        )
        self.ttft = Histogram(
            "kefu_time_to_first_token_seconds",
            "Time to first token",
            ["model_version"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "kefu_time_per_output_token_seconds",
            "Time per output token after the first",
            ["model_version"],
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("kefu_in_flight_requests", "Requests being answered now", registry=r)
        self.queue_depth = Gauge("kefu_queue_depth", "Requests waiting for the engine", registry=r)
        self.cache = Counter("kefu_cache", "Response cache lookups", ["result"], registry=r)
        self.cache_hit_rate = Gauge("kefu_cache_hit_rate", "Response cache hits / lookups", registry=r)
        self.escalations = Counter("kefu_escalations", "Conversations handed to humans", ["reason"], registry=r)
        self.guard_hits = Counter("kefu_guard_hits", "Guard verdicts that fired", ["guard"], registry=r)
        self.actions = Counter("kefu_actions", "Shop actions run", ["action", "status"], registry=r)
        self.rate_limited = Counter("kefu_rate_limited", "Requests refused with 429", registry=r)

    def render(self, queue_depth: Callable[[], int] | None = None, hit_rate: float | None = None) -> bytes:
        if queue_depth is not None:
            self.queue_depth.set(queue_depth())
        if hit_rate is not None:
            self.cache_hit_rate.set(hit_rate)
        return generate_latest(self.registry)
