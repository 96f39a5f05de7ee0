"""The sync routes' metric instruments, on the process's one registry (``Metrics``), built on
first use like ``edge/inbox/instruments.py`` (a registry refuses the same metric twice)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

from edge.metrics import Metrics


class SyncInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.handshakes = Counter(
            "bff_sync_handshakes",
            "Sync handshakes by outcome: ok; unverified (granted, but sync-service's cursor "
            "could not be read); unrecorded (granted, but not recorded: Postgres or the actor "
            "failed); upstream_unavailable, upstream_timeout, schema_drift, rejected (refused: "
            "the desktop stays offline and retries in 30 s)",
            ["outcome"],
            registry=r,
        )
        self.divergences = Counter(
            "bff_sync_cursor_divergences",
            "Handshakes that found the BFF's cached cursor different from sync-service's "
            "authoritative one (F-35), by direction: behind (cache older) or ahead (cache newer)",
            ["direction"],
            registry=r,
        )
        self.advances = Counter(
            "bff_sync_cursor_advances",
            "POST /sync/cursor by outcome: advanced, unchanged (not newer: the cursor stays), "
            "upstream_failed (sync-service did not take it), unrecorded (the actor failed)",
            ["outcome"],
            registry=r,
        )
        self.reads = Counter(
            "bff_sync_cursor_reads",
            "Cursor reads by source: postgres, cache_tier (Postgres down: the cache tier's "
            "copy), unavailable (both down)",
            ["source"],
            registry=r,
        )
        self.hints = Counter(
            "bff_offline_queue_hints",
            "Offline-queue hints by outcome: stored, failed (Postgres or the actor)",
            ["outcome"],
            registry=r,
        )


_built: weakref.WeakKeyDictionary[Metrics, SyncInstruments] = weakref.WeakKeyDictionary()


def sync_instruments(metrics: Metrics) -> SyncInstruments:
    """The sync instruments on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = SyncInstruments(metrics.registry)
    return found
