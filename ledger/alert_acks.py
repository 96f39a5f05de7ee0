"""Alert acknowledgements in Postgres (table ``alert_acks``, migration 0003): the ``AlertAcks``
port of the PropertyActor, and the outbox of the forwards to notification-service.

Why Postgres and not only the ledger: an acknowledgement must survive notification-service
being down (FAILURE_MODES F-12: "ack idempotent retry"), and something has to remember which
acks notification-service has not accepted yet. One row per ``(tenant, alertId)`` is both: the
first ack stands (a second one changes nothing), and ``forwarded_at IS NULL`` is the queue.

Forwarding is at-least-once with a lease: :meth:`AlertAckStore.claim_unforwarded` takes due rows
with ``FOR UPDATE SKIP LOCKED`` and moves their ``next_attempt_at`` past the lease in the same
statement, so two instances never forward the same ack at the same time, and a crashed holder's
rows fall due again once the lease runs out. A fresh ack is due only after
``first_attempt_delay_s``: the request that recorded it tries notification-service inline first,
and the forwarder must not race it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.appendlog import RETRYABLE_DB_ERRORS
from ledger.database import Database, DatabaseUnavailable, Record
from schemas.inbox import AlertAck, RecordedAck

FIRST_ATTEMPT_DELAY_S = 2.0
DELIVERED = "acknowledged"  # the outcome of a forward notification-service accepted
MAX_OVERLAY = 1000  # most acknowledgements one alert-list overlay reads

_RECORD = """
WITH inserted AS (
    INSERT INTO alert_acks
        (tenant, alert_id, property_id, operator_id, device_id, acknowledged_at, next_attempt_at)
    VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
    ON CONFLICT (tenant, alert_id) DO NOTHING
    RETURNING *
)
SELECT inserted.*, true AS created FROM inserted
UNION ALL
SELECT alert_acks.*, false AS created FROM alert_acks
WHERE tenant = $1 AND alert_id = $2 AND NOT EXISTS (SELECT 1 FROM inserted)
"""

_EXISTING = """
SELECT *, false AS created FROM alert_acks WHERE tenant = $1 AND alert_id = $2
"""

_CLAIM = """
UPDATE alert_acks AS a
SET next_attempt_at = now() + make_interval(secs => $2), attempts = a.attempts + 1
FROM (
    SELECT tenant, alert_id FROM alert_acks
    WHERE forwarded_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) AS due
WHERE a.tenant = due.tenant AND a.alert_id = due.alert_id
RETURNING a.*
"""

_FORWARDED = """
UPDATE alert_acks SET forwarded_at = now(), forward_outcome = $3, last_error = NULL
WHERE tenant = $1 AND alert_id = $2 AND forwarded_at IS NULL
RETURNING 1
"""

_RELEASE = """
UPDATE alert_acks SET next_attempt_at = now() + make_interval(secs => $3), last_error = $4
WHERE tenant = $1 AND alert_id = $2 AND forwarded_at IS NULL
"""

_OVERLAY = """
SELECT tenant, alert_id, property_id, operator_id, device_id, acknowledged_at FROM alert_acks
WHERE tenant = $1 AND property_id = $2 AND ($3::text[] IS NULL OR alert_id = ANY($3::text[]))
ORDER BY acknowledged_at DESC
LIMIT $4
"""

_PENDING = "SELECT count(*) FROM alert_acks WHERE forwarded_at IS NULL"


class AlertAckStore:
    """The ``AlertAcks`` port over Postgres, plus what the forwarder and the alert list need.
    Every call raises :class:`DatabaseUnavailable` when Postgres cannot answer in time."""

    def __init__(
        self, db: Database, *, first_attempt_delay_s: float = FIRST_ATTEMPT_DELAY_S
    ) -> None:
        self._db = db
        self._first_delay_s = first_attempt_delay_s

    async def record(self, ack: AlertAck) -> RecordedAck:
        """Insert unless ``(tenant, alertId)`` is acknowledged already; answer the ack on record
        (the first one) and whether this call inserted it."""
        args = (ack.tenant, ack.alert_id, ack.property_id, ack.operator_id, ack.device_id)
        row = await self._one(_RECORD, *args, ack.at, float(self._first_delay_s))
        if row is None:
            # A concurrent first ack committed after this statement's snapshot was taken (its
            # INSERT waited for that one, then did nothing): read it with a fresh snapshot.
            row = await self._one(_EXISTING, ack.tenant, ack.alert_id)
        if row is None:  # deleted in between: nothing in this service deletes acks
            raise DatabaseUnavailable(f"acknowledgement of {ack.alert_id} vanished")
        delivered = row["forward_outcome"] == DELIVERED  # not when refused for good
        return RecordedAck(ack=_ack(row), created=bool(row["created"]), forwarded=delivered)

    async def claim_unforwarded(self, limit: int, lease_s: float) -> list[AlertAck]:
        """Up to ``limit`` due acks not yet forwarded, oldest first, leased to the caller for
        ``lease_s`` (no other caller gets them until the lease runs out or they are released)."""
        rows = await self._fetch(_CLAIM, limit, float(lease_s))
        return sorted(map(_ack, rows), key=lambda a: a.at)

    async def mark_forwarded(self, tenant: str, alert_id: str, outcome: str = DELIVERED) -> bool:
        """notification-service has the ack (or refused it for good: ``outcome`` says which);
        False when it was marked already."""
        row = await self._one(_FORWARDED, tenant, alert_id, outcome[:200])
        return row is not None

    async def release(
        self, tenant: str, alert_id: str, retry_in_s: float, error: str | None = None
    ) -> None:
        """Give a claimed ack back, due again in ``retry_in_s`` (the forwarder's backoff)."""
        detail = None if error is None else error[:500]
        await self._fetch(_RELEASE, tenant, alert_id, max(0.0, float(retry_in_s)), detail)

    async def acknowledged(
        self, tenant: str, property_id: str, alert_ids: Sequence[str] | None = None
    ) -> dict[str, AlertAck]:
        """The property's acknowledgements by alert id: of ``alert_ids`` when given, else the
        latest ``MAX_OVERLAY``."""
        ids = None if alert_ids is None else list(alert_ids)
        rows = await self._fetch(_OVERLAY, tenant, property_id, ids, MAX_OVERLAY)
        return {row["alert_id"]: _ack(row) for row in rows}

    async def pending_count(self) -> int:
        """Acks notification-service has not accepted yet (the forwarder's backlog)."""
        rows = await self._fetch(_PENDING)
        return int(rows[0]["count"])

    async def _one(self, sql: str, *args: Any) -> Record | None:
        """One statement, one row, in one bridge crossing (``Database.fetchrow_once``)."""
        try:
            return await self._db.fetchrow_once(sql, *args)
        except DatabaseUnavailable:
            raise
        except RETRYABLE_DB_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def _fetch(self, sql: str, *args: Any) -> list[Record]:
        """One statement on a pooled connection."""
        try:
            async with self._db.connection() as conn:
                return await conn.fetch(sql, *args)
        except DatabaseUnavailable:
            raise
        except RETRYABLE_DB_ERRORS as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A server that stops answering midway (or is shut down under us) is an outage, like one
    that cannot be reached at all: the callers (the PropertyActor, the forwarder) wait it out."""
    return DatabaseUnavailable(f"{type(exc).__name__}: {exc}")


def _ack(row: Record) -> AlertAck:
    return AlertAck(
        tenant=row["tenant"],
        property_id=row["property_id"],
        alert_id=row["alert_id"],
        operator_id=row["operator_id"],
        device_id=row["device_id"],
        at=row["acknowledged_at"],
    )
