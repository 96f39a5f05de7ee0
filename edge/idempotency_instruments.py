"""The idempotency layer's metric instruments, registered on the process's one registry.

Kept here, one set per ``Metrics``, rather than in ``edge/metrics.py`` (the pattern of
``edge/inbox/instruments.py``): the layer and its cleanup task reach them through
:func:`idempotency_instruments`, which builds them on first use.

FAILURE_MODES F-32 watches deduplication: ``bff_idempotency_outcomes_total{outcome="replayed"}``
is the BFF's own dedup count; ``in_flight`` and ``reused`` are the requests it refused.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

from edge.metrics import Metrics
from ledger.instruments import LATENCY_BUCKETS


class IdempotencyInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.outcomes = Counter(
            "bff_idempotency_outcomes",
            "Keyed requests by outcome: claimed (ran), taken_over (ran again after a holder's "
            "lease ran out), replayed (stored answer), reused (422), in_flight (409), stored "
            "(final answer kept), released (claim dropped: the request failed retryably or was "
            "cancelled), lost (the claim was taken over before it could store), unstored "
            "(a final answer that could not be kept: streamed or oversized)",
            ["outcome"],
            registry=r,
        )
        self.store_failures = Counter(
            "bff_idempotency_store_failures",
            "Postgres could not be reached by operation (claim: the request was refused 503; "
            "complete, release: the key stays in flight until its lease ends)",
            ["operation"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "bff_idempotency_store_duration_seconds",
            "Round trip of one idempotency-store operation (claim, complete, release)",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pruned = Counter(
            "bff_idempotency_pruned_rows", "Expired idempotency keys deleted", registry=r
        )
        self.cleanup_failures = Counter(
            "bff_idempotency_cleanup_failures",
            "Cleanup runs that failed (retried at the next interval)",
            registry=r,
        )


_built: weakref.WeakKeyDictionary[Metrics, IdempotencyInstruments] = weakref.WeakKeyDictionary()


def idempotency_instruments(metrics: Metrics) -> IdempotencyInstruments:
    """The idempotency instruments on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = IdempotencyInstruments(metrics.registry)
    return found
