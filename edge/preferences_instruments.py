"""The preferences and shortcut-map metric instruments, registered on the process's one
registry (``Metrics``), built once per ``Metrics`` on first use (a registry refuses the same
metric twice)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

from edge.metrics import Metrics


class PreferencesInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.reads = Counter(
            "bff_preferences_reads",
            "Operator preference reads by source: cache, mirror (fresh), upstream "
            "(tenant-service), stale (the mirror while tenant-service is down), failed (none)",
            ["source"],
            registry=r,
        )
        self.writes = Counter(
            "bff_preferences_writes",
            "Preference updates by outcome: written, unchanged (tenant-service already had "
            "them), upstream_failed (nothing changed anywhere), conflict, mirror_failed / "
            "cache_failed (tenant-service has the change; the request is retried)",
            ["outcome"],
            registry=r,
        )
        self.store_failures = Counter(
            "bff_preferences_store_failures",
            "Preference cache (Redis) or mirror (Postgres) operations that failed, by store "
            "and operation",
            ["store", "operation"],
            registry=r,
        )
        self.shortcut_maps = Counter(
            "bff_shortcut_maps",
            "Shortcut maps served, by how: cached, rendered, degraded (defaults only: the "
            "preferences could not be read)",
            ["how"],
            registry=r,
        )
        self.overrides_ignored = Counter(
            "bff_shortcut_overrides_ignored",
            "Stored shortcut overrides a rendered map could not honour (unknown action, bad "
            "chord, chord taken)",
            registry=r,
        )
        self.help_invalidations = Counter(
            "bff_shortcut_help_invalidations",
            "Tenants' rendered shortcut help invalidated by melmastoon.theme.published.v1",
            registry=r,
        )


_built: weakref.WeakKeyDictionary[Metrics, PreferencesInstruments] = weakref.WeakKeyDictionary()


def preferences_instruments(metrics: Metrics) -> PreferencesInstruments:
    """The preferences instruments on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = PreferencesInstruments(metrics.registry)
    return found
