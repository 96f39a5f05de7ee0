"""The inboxes' metric instruments, registered on the process's one registry (``Metrics``).

They are kept here, one set per ``Metrics``, rather than in ``edge/metrics.py``: the routes and
the forwarder both reach them through :func:`inbox_instruments`, which builds them on first use
(a registry refuses the same metric twice).
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.metrics import Metrics


class InboxInstruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.ack_forwards = Counter(
            "bff_alert_ack_forwards",
            "Acknowledgements offered to notification-service, by path (inline, forwarder) and "
            "outcome (delivered, rejected: refused for good, failed: retried later)",
            ["path", "outcome"],
            registry=r,
        )
        self.ack_backlog = Gauge(
            "bff_alert_acks_unforwarded",
            "Recorded acknowledgements notification-service has not accepted yet",
            registry=r,
            multiprocess_mode="livemax",  # one table: each worker sees the same backlog
        )
        self.forwarder_outages = Counter(
            "bff_alert_ack_forwarder_outages",
            "Forwarder rounds that could not read or update the acknowledgements (Postgres)",
            registry=r,
        )
        self.inbox_reads = Counter(
            "bff_inbox_reads",
            "Inbox reads by inbox (alerts, suggestions) and source (projection, upstream, "
            "degraded: the upstream could not be asked)",
            ["inbox", "source"],
            registry=r,
        )


_built: weakref.WeakKeyDictionary[Metrics, InboxInstruments] = weakref.WeakKeyDictionary()


def inbox_instruments(metrics: Metrics) -> InboxInstruments:
    """The inbox instruments on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = InboxInstruments(metrics.registry)
    return found
