"""DeviceSyncStatus in Postgres: last seen, app version, heartbeat count, the sync cursor cache and
the offline-queue hint, per device.

One row per (tenant, device). Every write is one statement, so concurrent writers (two
instances, a heartbeat racing a cursor advance) never lose each other's update:

* a heartbeat upserts; a retried one (same command id, kept in ``recent_commands``) is counted
  once and changes nothing else;
* the cursor only grows through :meth:`DeviceStatusStore.advance_cursor` (integer order, the
  row lock of the upsert makes it a compare-and-swap); only a handshake's reset to
  sync-service's authoritative value (:meth:`~DeviceStatusStore.reset_cursor`) may lower it,
  and only if nothing changed the cursor since the handshake read it (its revision);
* every change of the cursor bumps ``cursor_revision``: the Redis copy keeps the newest
  revision, whatever order two instances' copies arrive in.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.database import Database, Record

RECENT_COMMANDS = 32


class DeviceSyncStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    tenant: str
    device_id: str
    last_seen_at: datetime
    app_version: str | None
    operator_id: str | None
    heartbeat_count: int
    cursor_version: int | None = None
    cursor_at: datetime | None = None
    cursor_revision: int = 0
    cursor_previous: int | None = None
    cursor_source: str | None = None
    online_since: datetime | None = None
    queued_actions: int | None = None
    oldest_queued_at: datetime | None = None
    hint_at: datetime | None = None


class HeartbeatOutcome(msgspec.Struct, frozen=True):
    status: DeviceSyncStatus
    duplicate: bool


class CursorMove(msgspec.Struct, frozen=True):
    """The row after a cursor write, and whether this write changed the cursor."""

    status: DeviceSyncStatus
    changed: bool


_COLUMNS = ", ".join(DeviceSyncStatus.__struct_fields__)

_HEARTBEAT = f"""
WITH previous AS (
    SELECT recent_commands FROM device_sync_status WHERE tenant = $1 AND device_id = $2
), seen AS (
    SELECT coalesce((SELECT $6 = ANY(recent_commands) FROM previous), false) AS duplicate
)
INSERT INTO device_sync_status AS d
    (tenant, device_id, last_seen_at, app_version, operator_id, heartbeat_count, recent_commands,
     queued_actions, hint_at, online_since)
VALUES ($1, $2, $3, $4, $5, 1, ARRAY[$6], $8,
        CASE WHEN $8::integer IS NULL THEN NULL ELSE $3::timestamptz END, $9)
ON CONFLICT (tenant, device_id) DO UPDATE SET
    last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at),
    app_version = excluded.app_version,
    operator_id = coalesce(excluded.operator_id, d.operator_id),
    heartbeat_count = d.heartbeat_count + CASE WHEN (SELECT duplicate FROM seen) THEN 0 ELSE 1 END,
    recent_commands = CASE WHEN (SELECT duplicate FROM seen) THEN d.recent_commands
        ELSE (d.recent_commands || $6)[greatest(cardinality(d.recent_commands) + 2 - $7, 1):]
    END,
    queued_actions = CASE WHEN (SELECT duplicate FROM seen) OR excluded.queued_actions IS NULL
        THEN d.queued_actions ELSE excluded.queued_actions END,
    oldest_queued_at = CASE WHEN (SELECT duplicate FROM seen) OR excluded.queued_actions IS NULL
        THEN d.oldest_queued_at WHEN excluded.queued_actions = 0 THEN NULL
        ELSE d.oldest_queued_at END,
    hint_at = CASE WHEN (SELECT duplicate FROM seen) OR excluded.queued_actions IS NULL
        THEN d.hint_at ELSE excluded.hint_at END,
    online_since = CASE WHEN (SELECT duplicate FROM seen) THEN d.online_since
        ELSE coalesce(excluded.online_since, d.online_since) END,
    updated_at = now()
RETURNING {_COLUMNS}, (SELECT duplicate FROM seen) AS duplicate
"""  # noqa: S608 (constant columns, bound values)

_ADVANCE = f"""
INSERT INTO device_sync_status AS d
    (tenant, device_id, last_seen_at, operator_id, cursor_version, cursor_at, cursor_revision,
     cursor_source)
VALUES ($1, $2, $3, $4, $5, $3, 1, $6)
ON CONFLICT (tenant, device_id) DO UPDATE SET
    cursor_version = excluded.cursor_version,
    cursor_at = excluded.cursor_at,
    cursor_revision = d.cursor_revision + 1,
    cursor_previous = d.cursor_version,
    cursor_source = excluded.cursor_source,
    operator_id = coalesce(excluded.operator_id, d.operator_id),
    updated_at = now()
WHERE d.cursor_version IS NULL OR d.cursor_version < excluded.cursor_version
RETURNING {_COLUMNS}
"""  # noqa: S608 (constant columns, bound values)

_RESET = f"""
INSERT INTO device_sync_status AS d
    (tenant, device_id, last_seen_at, operator_id, cursor_version, cursor_at, cursor_revision,
     cursor_source)
VALUES ($1, $2, $3, $4, $5, $3, 1, 'sync_service')
ON CONFLICT (tenant, device_id) DO UPDATE SET
    cursor_version = excluded.cursor_version,
    cursor_at = excluded.cursor_at,
    cursor_revision = d.cursor_revision + 1,
    cursor_previous = d.cursor_version,
    cursor_source = excluded.cursor_source,
    operator_id = coalesce(excluded.operator_id, d.operator_id),
    updated_at = now()
WHERE d.cursor_revision = $6 AND d.cursor_version IS DISTINCT FROM excluded.cursor_version
RETURNING {_COLUMNS}
"""  # noqa: S608 (constant columns, bound values)

_HINT = f"""
INSERT INTO device_sync_status AS d
    (tenant, device_id, last_seen_at, operator_id, queued_actions, oldest_queued_at, hint_at)
VALUES ($1, $2, $3, $4, $5, $6, $3)
ON CONFLICT (tenant, device_id) DO UPDATE SET
    queued_actions = excluded.queued_actions,
    oldest_queued_at = excluded.oldest_queued_at,
    hint_at = excluded.hint_at,
    operator_id = coalesce(excluded.operator_id, d.operator_id),
    updated_at = now()
WHERE d.hint_at IS NULL OR d.hint_at <= excluded.hint_at
RETURNING {_COLUMNS}
"""  # noqa: S608 (constant columns, bound values)

_GET = f"SELECT {_COLUMNS} FROM device_sync_status WHERE tenant = $1 AND device_id = $2"  # noqa: S608


class DeviceStatusStore:
    """The ``DeviceStatus`` port over Postgres. Outages raise ``DatabaseUnavailable``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_heartbeat(
        self,
        tenant: str,
        device_id: str,
        *,
        at: datetime,
        app_version: str,
        operator_id: str | None,
        command_id: str,
        queued_actions: int | None = None,
        online_since: datetime | None = None,
    ) -> HeartbeatOutcome:
        """Upsert. ``queued_actions`` (when given) replaces the hint's count (0 also clears its
        oldest time); ``online_since`` replaces the stored one. A duplicate changes nothing."""
        row = await self._db.fetchrow_once(
            _HEARTBEAT,
            tenant,
            device_id,
            at,
            app_version,
            operator_id,
            command_id,
            RECENT_COMMANDS,
            queued_actions,
            online_since,
        )
        assert row is not None
        return HeartbeatOutcome(status=_status(row), duplicate=bool(row["duplicate"]))

    async def advance_cursor(
        self,
        tenant: str,
        device_id: str,
        cursor: int,
        *,
        at: datetime,
        source: str,
        operator_id: str | None,
    ) -> CursorMove:
        """Move the cursor to ``cursor`` if that is newer; otherwise leave it (``changed``
        false) and answer the row as it is."""
        row = await self._db.fetchrow_once(
            _ADVANCE, tenant, device_id, at, operator_id, cursor, source
        )
        if row is not None:
            return CursorMove(status=_status(row), changed=True)
        return CursorMove(status=await self._require(tenant, device_id), changed=False)

    async def reset_cursor(
        self,
        tenant: str,
        device_id: str,
        cursor: int,
        *,
        expected_revision: int,
        at: datetime,
        operator_id: str | None,
    ) -> CursorMove:
        """Set the cursor to sync-service's authoritative ``cursor`` — up or down — if its
        revision is still ``expected_revision`` (nothing moved it since it was read)."""
        row = await self._db.fetchrow_once(
            _RESET, tenant, device_id, at, operator_id, cursor, expected_revision
        )
        if row is not None:
            return CursorMove(status=_status(row), changed=True)
        return CursorMove(status=await self._require(tenant, device_id), changed=False)

    async def record_queue_hint(
        self,
        tenant: str,
        device_id: str,
        *,
        queued_actions: int,
        oldest_queued_at: datetime | None,
        at: datetime,
        operator_id: str | None,
    ) -> DeviceSyncStatus:
        """Store the ``OfflineActionQueueHint`` unless a newer one (by ``at``) is stored."""
        row = await self._db.fetchrow_once(
            _HINT, tenant, device_id, at, operator_id, queued_actions, oldest_queued_at
        )
        return _status(row) if row is not None else await self._require(tenant, device_id)

    async def get(self, tenant: str, device_id: str) -> DeviceSyncStatus | None:
        row = await self._db.fetchrow_once(_GET, tenant, device_id)
        return None if row is None else _status(row)

    async def _require(self, tenant: str, device_id: str) -> DeviceSyncStatus:
        status = await self.get(tenant, device_id)
        assert status is not None, "rows are never deleted"
        return status


def _status(row: Record) -> DeviceSyncStatus:
    fields = {name: row[name] for name in DeviceSyncStatus.__struct_fields__}
    return DeviceSyncStatus(**fields)
