"""Prometheus metrics of one service instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3, 10, 30)


class Metrics:
    """Every metric the service exports. Later features add theirs here, in one place."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bff_http_requests", "HTTP requests by route and status", ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bff_http_request_duration_seconds", "HTTP request latency by route",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.errors = Counter(
            "bff_http_errors", "Error responses by code", ["code"], registry=r
        )
        self.dependency_up = Gauge(
            "bff_dependency_up", "1 when the dependency answered its last health check",
            ["dependency"], registry=r,
        )
        self.in_flight = Gauge("bff_http_in_flight", "Requests being served", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
