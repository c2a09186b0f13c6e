"""Prometheus metrics of one gateway (its own registry, so several gateways can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vallum_requests", "Requests answered, by route and HTTP status", ["route", "status"], registry=r
        )
        self.verdicts = Counter(
            "vallum_verdicts", "Verdicts by stage (input/output) and action", ["stage", "action"], registry=r
        )
        self.categories = Counter(
            "vallum_category_hits", "Categories that drove a verdict", ["stage", "category"], registry=r
        )
        self.detector_errors = Counter(
            "vallum_detector_errors",
            "Detector failures, by detector and the fail mode that decided the request",
            ["detector", "fail_mode"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "vallum_upstream_errors",
            "Upstream failures by upstream and kind",
            ["upstream", "kind"],
            registry=r,
        )
        self.analytics_errors = Counter(
            "vallum_analytics_errors",
            "Events behaviour analytics could not count (shared store down)",
            registry=r,
        )
        self.shared_state_errors = Counter(
            "vallum_shared_state_errors",
            "Calls to shared state (redis, database) that failed, and the fail mode that decided",
            ["store", "fail_mode"],
            registry=r,
        )
        self.queue_depth = Gauge("vallum_event_queue_depth", "Events waiting to be written", registry=r)
        self.events_written = Gauge("vallum_events_written", "Events written to the store", registry=r)
        self.restrictions = Counter(
            "vallum_identity_refusals",
            "Requests refused by an identity's block or cool-down",
            ["kind"],
            registry=r,
        )
        self.events_dropped = Gauge(
            "vallum_events_dropped", "Events dropped because the queue was full", registry=r
        )
        self.guard_seconds = Histogram(
            "vallum_guard_seconds",
            "Time spent scanning, per stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "vallum_upstream_seconds",
            "Upstream response time",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
