"""Audit completeness as a metric (FAILURE_MODES F-27: ``lock_audit_completeness < 100%``).

``./ops/ledger verify`` is exact over the whole ledger but is a tool someone has to run; the
alert needs a number the service exports. Every ``interval_s`` this task counts, per check
(``lock``, ``mutation``: ``ledger/attempts.py``), the attempts recorded in the last
``window_s`` (past their ``grace_s``, as verify's ``--attempt-grace-s``) and how many have no
outcome, and sets:

* ``bff_audit_completeness{check}``: 1 - unfinished / attempts (1 when there were none);
* ``bff_audit_unfinished_attempts{check}``: the count behind it.

Why a window, not the whole ledger: the query stays bounded by the ``recorded_at`` index
however large the 90-day ledger grows, and an alert only needs to see a gap soon after it
appears (an unfinished attempt stays in the window for ``window_s``, 24 h; verify lists it
for ever). Every instance computes the same figures (one small query a minute), so the gauges
take the minimum / maximum across worker processes. A Postgres outage leaves the last values.
"""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime, timedelta

import trio
from prometheus_client import CollectorRegistry, Gauge

from edge.metrics import Metrics
from ledger.appendlog import RETRYABLE_DB_ERRORS
from ledger.attempts import window_completeness
from ledger.database import Database

log = logging.getLogger("bff.audit")

INTERVAL_S = 60.0
WINDOW_S = 24 * 3600.0
GRACE_S = 60.0


class AuditGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.completeness = Gauge(
            "bff_audit_completeness",
            "Share of the attempts of the last 24 h (older than 60 s) that have their outcome "
            "row, by check (lock, mutation); below 1 is F-27",
            ["check"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.unfinished = Gauge(
            "bff_audit_unfinished_attempts",
            "Attempts of the last 24 h (older than 60 s) without an outcome row, by check",
            ["check"],
            registry=registry,
            multiprocess_mode="livemax",
        )

    def set(self, figures: dict[str, tuple[int, int]]) -> None:
        for check, (attempts, unfinished) in figures.items():
            self.completeness.labels(check).set(1.0 - unfinished / attempts if attempts else 1.0)
            self.unfinished.labels(check).set(unfinished)


_built: weakref.WeakKeyDictionary[Metrics, AuditGauges] = weakref.WeakKeyDictionary()


def audit_gauges(metrics: Metrics) -> AuditGauges:
    """The gauges on ``metrics``' registry (built once per ``Metrics``)."""
    found = _built.get(metrics)
    if found is None:
        found = _built[metrics] = AuditGauges(metrics.registry)
    return found


async def measure_once(
    db: Database,
    gauges: AuditGauges,
    *,
    window_s: float = WINDOW_S,
    grace_s: float = GRACE_S,
    now: datetime | None = None,
) -> dict[str, tuple[int, int]]:
    before = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    async with db.connection() as conn:
        figures = await window_completeness(
            conn, since=before - timedelta(seconds=window_s), before=before
        )
    gauges.set(figures)
    return figures


async def run_audit_completeness(
    db: Database,
    metrics: Metrics,
    *,
    interval_s: float = INTERVAL_S,
    window_s: float = WINDOW_S,
    grace_s: float = GRACE_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Measure every ``interval_s`` until cancelled."""
    gauges = audit_gauges(metrics)
    task_status.started()
    while True:
        try:
            figures = await measure_once(db, gauges, window_s=window_s, grace_s=grace_s)
            if any(unfinished for _, unfinished in figures.values()):
                log.error("audit attempts without an outcome", extra={"figures": figures})
        except RETRYABLE_DB_ERRORS as exc:
            log.warning("audit completeness not measured", extra={"error": type(exc).__name__})
        await trio.sleep(interval_s)
