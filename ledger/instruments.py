"""The ledger's metric instruments: the group-commit writer and retention.

The ledger owns its instruments; the process registers them on its one registry (the edge's
``Metrics``). Built without a registry they live on a private one, as tests and tools need.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.05,
    0.1,
    0.2,
    0.4,
    0.8,
    1.5,
    3,
    10,
    30,
)


class LedgerInstruments:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.ledger_appended = Counter(
            "bff_ledger_appended_events", "Events durably appended", registry=r
        )
        self.ledger_batch_events = Histogram(
            "bff_ledger_batch_events",
            "Events per group-committed batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.ledger_commit_seconds = Histogram(
            "bff_ledger_commit_duration_seconds",
            "Time to write one batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ledger_append_errors = Counter(
            "bff_ledger_append_errors",
            "Failed appends by reason (conflict, timeout, connection, rejected)",
            ["reason"],
            registry=r,
        )
        self.ledger_pruned = Counter(
            "bff_ledger_pruned_rows", "Rows deleted by retention", registry=r
        )
