"""``dashboard.viewed.v1`` / ``workbench.opened.v1``: one ledger event per view, off the hot path.

A view records its event without waiting (the response is never held by the ledger); one task
drains the queue and appends whatever has accumulated in one ledger call, so a burst of views
costs one group commit. Telemetry is best effort (FAILURE_MODES §2, "outbox enqueue"): with
Postgres down the batch is dropped after its deadline and counted, and views keep working.

Stream ``activity:<operatorId>`` (OperatorActivity, SERVICE_OVERVIEW §3), appended without an
expected version: telemetry never conflicts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

import msgspec
import trio

from edge.metrics import Metrics
from ledger.model import AppendResult, NewEvent
from schemas.actor_events import SUBJECT_PREFIX

log = logging.getLogger("bff.dashboard.telemetry")

DASHBOARD_VIEWED = SUBJECT_PREFIX + "dashboard.viewed.v1"
WORKBENCH_OPENED = SUBJECT_PREFIX + "workbench.opened.v1"
QUEUE = 10_000
BATCH = 500
APPEND_TIMEOUT_S = 5.0
_encoder = msgspec.json.Encoder()


class Appender(Protocol):
    async def append(
        self, events: list[NewEvent], *, timeout: float = 5.0
    ) -> list[AppendResult]: ...


class TelemetryWriter:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._send, self._receive = trio.open_memory_channel[NewEvent](QUEUE)

    def record(
        self,
        subject: str,
        payload: msgspec.Struct,
        *,
        tenant: str,
        operator_id: str,
        device_id: str,
        request_id: str | None,
    ) -> None:
        """Queue one event; never waits (a full queue drops it, counted)."""
        event = NewEvent(
            tenant=tenant,
            stream=f"activity:{operator_id}",
            subject=subject,
            payload=msgspec.Raw(_encoder.encode(payload)),
            operator_id=operator_id,
            device_id=device_id,
            request_id=request_id,
            occurred_at=datetime.now(UTC),
        )
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._metrics.dashboard_telemetry.labels("dropped").inc()

    async def run(self, ledger: Appender | None) -> None:
        """Drain the queue into ``ledger`` until cancelled (no ledger: count and drop)."""
        async for first in self._receive:
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._append(ledger, batch)

    async def _append(self, ledger: Appender | None, batch: list[NewEvent]) -> None:
        if ledger is None:
            self._metrics.dashboard_telemetry.labels("dropped").inc(len(batch))
            return
        try:
            await ledger.append(batch, timeout=APPEND_TIMEOUT_S)
        except Exception as exc:  # the ledger's own errors: unavailable, rejected, …
            log.warning(
                "view telemetry dropped",
                extra={"events": len(batch), "error": f"{type(exc).__name__}: {exc}"[:200]},
            )
            self._metrics.dashboard_telemetry.labels("dropped").inc(len(batch))
            return
        self._metrics.dashboard_telemetry.labels("appended").inc(len(batch))
