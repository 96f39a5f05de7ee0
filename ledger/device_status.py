"""DeviceSyncStatus in Postgres: last seen, app version, heartbeat count, sync cursor per device.

One row per (tenant, device), upserted on every heartbeat. A retried heartbeat (same command
id, kept in ``recent_commands``) is counted once, atomically in the same statement.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.database import Database

RECENT_COMMANDS = 32


class DeviceSyncStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    tenant: str
    device_id: str
    last_seen_at: datetime
    app_version: str | None
    operator_id: str | None
    heartbeat_count: int
    cursor_version: str | None = None
    cursor_at: datetime | None = None


class HeartbeatOutcome(msgspec.Struct, frozen=True):
    status: DeviceSyncStatus
    duplicate: bool


_UPSERT = """
WITH previous AS (
    SELECT recent_commands FROM device_sync_status WHERE tenant = $1 AND device_id = $2
), seen AS (
    SELECT coalesce((SELECT $6 = ANY(recent_commands) FROM previous), false) AS duplicate
)
INSERT INTO device_sync_status AS d
    (tenant, device_id, last_seen_at, app_version, operator_id, heartbeat_count, recent_commands)
VALUES ($1, $2, $3, $4, $5, 1, ARRAY[$6])
ON CONFLICT (tenant, device_id) DO UPDATE SET
    last_seen_at = greatest(d.last_seen_at, excluded.last_seen_at),
    app_version = excluded.app_version,
    operator_id = coalesce(excluded.operator_id, d.operator_id),
    heartbeat_count = d.heartbeat_count + CASE WHEN (SELECT duplicate FROM seen) THEN 0 ELSE 1 END,
    recent_commands = CASE WHEN (SELECT duplicate FROM seen) THEN d.recent_commands
        ELSE (d.recent_commands || $6)[greatest(cardinality(d.recent_commands) + 2 - $7, 1):]
    END,
    updated_at = now()
RETURNING tenant, device_id, last_seen_at, app_version, operator_id, heartbeat_count,
          cursor_version, cursor_at, (SELECT duplicate FROM seen) AS duplicate
"""


class DeviceStatusStore:
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
    ) -> HeartbeatOutcome:
        row = await self._db.fetchrow_once(
            _UPSERT, tenant, device_id, at, app_version, operator_id, command_id, RECENT_COMMANDS
        )
        assert row is not None
        return HeartbeatOutcome(status=_status(row), duplicate=bool(row["duplicate"]))

    async def get(self, tenant: str, device_id: str) -> DeviceSyncStatus | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT tenant, device_id, last_seen_at, app_version, operator_id,"
                " heartbeat_count, cursor_version, cursor_at"
                " FROM device_sync_status WHERE tenant = $1 AND device_id = $2",
                tenant,
                device_id,
            )
        return None if row is None else _status(row)


def _status(row: object) -> DeviceSyncStatus:
    fields = {name: row[name] for name in DeviceSyncStatus.__struct_fields__}  # type: ignore[index]
    return DeviceSyncStatus(**fields)
