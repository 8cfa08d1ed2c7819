"""The endpoint's Prometheus metrics: requests by endpoint, arm and status, request latency, errors, feedback, the
live canary's share and the spool's backlog. One registry per app, so tests and processes never share counts."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self, backlog: Callable[[], tuple[int, int]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("reasonloop_requests", "requests answered, by endpoint, arm and HTTP status",
                                ["endpoint", "arm", "status"], registry=self.registry)
        self.latency = Histogram("reasonloop_request_latency_seconds", "time to respond, by endpoint and arm",
                                 ["endpoint", "arm"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("reasonloop_request_errors", "requests that failed, by endpoint and kind",
                              ["endpoint", "kind"], registry=self.registry)
        self.feedback = Counter("reasonloop_feedback", "feedback recorded, by kind (rating_up, rating_down, "
                                "correction)", ["kind"], registry=self.registry)
        self.canary_share = Gauge("reasonloop_canary_share", "share of sessions routed to the live canary's "
                                  "candidate (0: no canary)", registry=self.registry)
        backlog_gauge = Gauge("reasonloop_export_backlog", "acknowledged but not yet in MLflow, by kind",
                              ["kind"], registry=self.registry)
        backlog_gauge.labels("answers").set_function(lambda: backlog()[0])
        backlog_gauge.labels("feedback").set_function(lambda: backlog()[1])

    def observe(self, endpoint: str, arm: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, arm, str(status)).inc()
        self.latency.labels(endpoint, arm).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
