"""The mutation routes' metric instruments, registered on the process's one registry.

Kept here, one set per ``Metrics``, rather than in ``edge/metrics.py`` (as
``edge/inbox/instruments.py``): built on first use through :func:`mutation_instruments`.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

from edge.metrics import Metrics


class MutationInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.outcomes = Counter(
            "bff_mutations",
            "Mutations and lock actions by action and recorded outcome (success; failure; "
            "unknown: the upstream may have acted; refused: never sent upstream)",
            ["action", "outcome"],
            registry=r,
        )
        self.audit_failures = Counter(
            "bff_mutation_audit_failures",
            "Audit rows that could not be recorded, by action and row (attempt: the mutation "
            "was not sent; outcome: answered 503, the attempt stays open for ./ops/ledger "
            "verify; refusal: the refusal is only counted here)",
            ["action", "row"],
            registry=r,
        )
        self.invalidation_failures = Counter(
            "bff_mutation_invalidation_failures",
            "Mutations applied upstream whose stale views could not be invalidated or hinted "
            "(they expire, and the domain event invalidates them again)",
            ["action"],
            registry=r,
        )


_built: weakref.WeakKeyDictionary[Metrics, MutationInstruments] = weakref.WeakKeyDictionary()


def mutation_instruments(metrics: Metrics) -> MutationInstruments:
    """The mutation instruments on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = MutationInstruments(metrics.registry)
    return found
