"""Prometheus metrics of one service instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from actors.instruments import ActorInstruments
from ledger.instruments import LATENCY_BUCKETS, LedgerInstruments

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _per_route(name: str, documentation: str, registry: CollectorRegistry) -> Histogram:
    """A latency histogram by ``method`` and route template."""
    return Histogram(
        name,
        f"{documentation}, by route",
        ["method", "route"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class Metrics:
    """Every metric the service exports, on one registry. The core packages own their
    instruments (``actors.instruments``, ``ledger.instruments``); the edge registers them here."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bff_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = _per_route("bff_http_request_duration_seconds", "HTTP request latency", r)
        self.first_byte = _per_route(
            "bff_http_first_byte_seconds",
            "From the request to the first byte of its response body (for a stream: its opening)",
            r,
        )
        self.rss = Gauge(
            "bff_process_resident_memory_bytes",
            "Resident memory of each worker process, sampled every few seconds",
            registry=r,
            multiprocess_mode="liveall",  # one series per live worker (pid label)
        )
        self.errors = Counter("bff_http_errors", "Error responses by code", ["code"], registry=r)
        self.dependency_up = Gauge(
            "bff_dependency_up",
            "1 when the dependency answered its last health check",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemin",  # down when any worker saw it down
        )
        self.in_flight = Gauge(
            "bff_http_in_flight", "Requests being served", registry=r, multiprocess_mode="livesum"
        )
        self.actors = ActorInstruments(r)  # owned by actors/
        self.ledger = LedgerInstruments(r)  # owned by ledger/
        self._add_bus_metrics(r)
        self._add_upstream_metrics(r)
        self._add_dashboard_metrics(r)

    def _add_bus_metrics(self, r: CollectorRegistry) -> None:
        """Outbox relay and bus subscriber (edge/bus/)."""
        self.relay_published = Counter(
            "bff_relay_published_events", "Ledger rows the broker acknowledged", registry=r
        )
        self.relay_publish_failures = Counter(
            "bff_relay_publish_failures", "Publish attempts the broker refused", registry=r
        )
        self.relay_position = Gauge(
            "bff_relay_position",
            "Last ledger position published by this relay",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.relay_lag = Gauge(
            "bff_relay_lag_events",
            "Ledger rows not yet published (outbox depth)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.relay_lag_seconds = Gauge(
            "bff_relay_lag_seconds",
            "Age of the oldest ledger row not yet published (0 when the outbox is empty)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.bus_dead_letters = Gauge(
            "bff_bus_dead_letters",
            "Messages parked in the dead-letter store (embedded bus; on Pub/Sub the dead-letter "
            "subscription's num_undelivered_messages)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.bus_consumed = Counter(
            "bff_bus_consumed_events",
            "Domain events taken from the bus by outcome (handled, redelivered, dead_lettered)",
            ["outcome"],
            registry=r,
        )

    def _add_upstream_metrics(self, r: CollectorRegistry) -> None:
        """Upstream clients (edge/upstream/): attempts, latency, retries, drift, circuits."""
        self.upstream_requests = Counter(
            "bff_upstream_requests",
            "Upstream attempts by outcome (ok, rejected, error, timeout, connect_error, "
            "circuit_open, deadline, auth_error, queued: no free slot within the budget)",
            ["upstream", "operation", "outcome"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "bff_upstream_request_duration_seconds",
            "Upstream attempt latency",
            ["upstream", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            "bff_upstream_retries", "Upstream retries", ["upstream", "operation"], registry=r
        )
        self.upstream_schema_drift = Counter(
            "bff_upstream_schema_drift",
            "Upstream answers that failed their schema (SCHEMA_DRIFT)",
            ["upstream", "operation"],
            registry=r,
        )
        self.upstream_circuit_state = Gauge(
            "bff_upstream_circuit_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open",
            ["upstream"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.upstream_circuit_transitions = Counter(
            "bff_upstream_circuit_transitions",
            "Circuit breaker state changes by target state",
            ["upstream", "to"],
            registry=r,
        )
        self.upstream_id_tokens = Counter(
            "bff_upstream_id_token_fetches",
            "Google ID tokens fetched from the metadata server by outcome",
            ["outcome"],
            registry=r,
        )

        # --- device auth (edge/auth/) ---
        self.auth_rejected = Counter(
            "bff_auth_rejected", "Requests the auth chain rejected, by code", ["code"], registry=r
        )
        self.dpop_replay_blocked = Counter(
            "bff_dpop_replay_blocked", "DPoP proofs rejected as replays", registry=r
        )
        self.mfa_replay_blocked = Counter(
            "bff_mfa_replay_blocked", "MFA attestations rejected as already used", registry=r
        )
        self.sessions_opened = Counter("bff_sessions_opened", "Sessions opened", registry=r)
        self.sessions_closed = Counter(
            "bff_sessions_closed", "Sessions closed, by reason", ["reason"], registry=r
        )
        self.auth_degraded = Counter(
            "bff_auth_degraded",
            "Auth checks answered from a local fallback because a dependency was down",
            ["check"],
            registry=r,
        )

    def _add_dashboard_metrics(self, r: CollectorRegistry) -> None:
        """Dashboard stream and workbench views (edge/dashboard/)."""
        self.dashboard_widgets = Counter(
            "bff_dashboard_widgets",
            "Composed widgets by upstream and status (ok, unavailable)",
            ["upstream", "status"],
            registry=r,
        )
        self.dashboard_compositions = Counter(
            "bff_dashboard_compositions",
            "Compositions by kind (dashboard, view) and outcome (complete, partial, stale, failed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.dashboard_composition_seconds = Histogram(
            "bff_dashboard_composition_duration_seconds",
            "Time to compose a dashboard or build a view from the upstreams",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dashboard_slowest_call_seconds = Histogram(
            "bff_dashboard_slowest_call_duration_seconds",
            "Per dashboard composition, its slowest upstream call (composition time can't beat it)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dashboard_cache = Counter(
            "bff_dashboard_cache",
            "Snapshot/view cache reads by kind and result (hit, miss, error, foreign)",
            ["kind", "result"],
            registry=r,
        )
        self.dashboard_flights = Counter(
            "bff_dashboard_flights",
            "Flights started, and flights that waited for a peer instance's composition",
            ["kind", "event"],
            registry=r,
        )
        self.sse_streams = Gauge(
            "bff_sse_connections",
            "Live SSE streams held by this instance",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.sse_events = Counter(
            "bff_sse_events", "Events written to SSE streams by event name", ["event"], registry=r
        )
        self.sse_cut = Counter(
            "bff_sse_cut",
            "SSE streams ended by the server, by reason (slow_consumer, replaced, drain, "
            "force_logout, token_expired, ...)",
            ["reason"],
            registry=r,
        )
        self.sse_refused = Counter(
            "bff_sse_refused",
            "SSE streams refused at open, by reason (too_many_streams, draining, session_closed)",
            ["reason"],
            registry=r,
        )
        self.sse_broker_errors = Counter(
            "bff_sse_broker_errors",
            "Failures of the stream hub's subscription to its node channel (it re-subscribes)",
            registry=r,
        )
        self.sse_repeats_skipped = Counter(
            "bff_sse_repeats_skipped",
            "Feed items a stream skipped as repeats (a key appended again after a tier restart)",
            registry=r,
        )
        self.sse_first_event_seconds = Histogram(
            "bff_sse_first_event_seconds",
            "From the stream request to its first byte of events (retry hint and history)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dashboard_telemetry = Counter(
            "bff_dashboard_telemetry_events",
            "View telemetry events by outcome (appended, dropped)",
            ["outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        """This process's metrics; with worker processes (``BFF_WORKERS``), the whole
        instance's: every worker writes its values under ``PROMETHEUS_MULTIPROC_DIR`` (set by
        edge/workers.py) and whichever worker a scrape reaches sums them (counters, histograms)
        or applies each gauge's ``multiprocess_mode``."""
        shared = os.environ.get(MULTIPROC_ENV)
        if not shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
