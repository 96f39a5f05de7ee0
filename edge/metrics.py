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
            "bff_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bff_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("bff_http_errors", "Error responses by code", ["code"], registry=r)
        self.dependency_up = Gauge(
            "bff_dependency_up",
            "1 when the dependency answered its last health check",
            ["dependency"],
            registry=r,
        )
        self.in_flight = Gauge("bff_http_in_flight", "Requests being served", registry=r)
        self._add_actor_metrics(r)

    def _add_actor_metrics(self, r: CollectorRegistry) -> None:
        """Actor runtime (actors/): population, mailboxes, supervision, delivery failures."""
        self.actors_active = Gauge(
            "bff_actors_active", "Live (not failed) actors by kind", ["kind"], registry=r
        )
        self.actors_failed = Gauge(
            "bff_actors_failed", "Actors whose supervisor gave up, by kind", ["kind"], registry=r
        )
        self.actor_mailbox_depth = Gauge(
            "bff_actor_mailbox_depth", "Messages queued in mailboxes, by kind", ["kind"], registry=r
        )
        self.actor_activations = Counter(
            "bff_actor_activations",
            "Actor activations (virtual actor brought to life)",
            ["kind"],
            registry=r,
        )
        self.actor_restarts = Counter(
            "bff_actor_restarts", "Supervisor restarts after a crash or kill", ["kind"], registry=r
        )
        self.actor_escalations = Counter(
            "bff_actor_escalations",
            "Supervisors that gave up (restart budget exhausted)",
            ["kind"],
            registry=r,
        )
        self.actor_passivations = Counter(
            "bff_actor_passivations", "Idle actors passivated", ["kind"], registry=r
        )
        self.actor_overloaded = Counter(
            "bff_actor_overloaded",
            "Messages refused because a mailbox stayed full",
            ["kind"],
            registry=r,
        )
        self.actor_ask_timeouts = Counter(
            "bff_actor_ask_timeouts",
            "Asks that got no reply before their deadline",
            ["kind"],
            registry=r,
        )
        self.actor_expired = Counter(
            "bff_actor_expired",
            "Asks dropped unprocessed because the asker had given up",
            ["kind"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
