"""The devices' sync cursors: the cache tier's copy (the ``SyncCursors`` port) and how the routes
read a cursor.

Postgres (``DeviceSyncStatus``) is the BFF's authority for a device's cursor: every change is one
conditional statement there, so it never moves backwards. The cache tier holds a copy per device
— a hash ``<prefix>:<tenant>:device:<deviceId>:sync:cursor`` with the cursor, the revision it
was copied at, when and by whom it was set; TTL ``BFF_SYNC_CURSOR_TTL_S`` — written by the
DeviceActor after each change. A Lua script keeps the newest revision, so two instances' copies
arriving out of order never put an older cursor back. Reads go to Postgres and fall back to the
copy while Postgres is down (F-20): then a cursor may be a change behind, never corrupt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from actors.ports import CachedCursor
from edge.redis_tier import Client, RedisTier, TierUnavailable, text
from ledger.database import DatabaseUnavailable
from ledger.device_status import DeviceStatusStore

_PUT = """
local held = redis.call('HGET', KEYS[1], 'rev')
if held and tonumber(held) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'cursor', ARGV[2], 'at', ARGV[3], 'source', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisSyncCursors:
    """The ``SyncCursors`` port on the cache tier; outages raise ``TierUnavailable``."""

    def __init__(self, cache: RedisTier, *, ttl_s: float) -> None:
        self._cache = cache
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._script: Any = None

    def key(self, tenant: str, device_id: str) -> str:
        return self._cache.key(tenant, "device", device_id, "sync", "cursor")

    async def get(self, tenant: str, device_id: str) -> CachedCursor | None:
        raw: dict[Any, Any] = await self._cache.run(
            lambda r: r.hgetall(self.key(tenant, device_id))
        )
        fields = {text(k): text(v) for k, v in raw.items()}
        try:
            return CachedCursor(
                cursor=int(fields["cursor"]),
                revision=int(fields["rev"]),
                at=datetime.fromisoformat(fields["at"]) if fields.get("at") else None,
                source=fields.get("source") or None,
            )
        except (KeyError, ValueError):  # absent (or not written by this module): a miss
            return None

    async def put(self, tenant: str, device_id: str, cached: CachedCursor) -> None:
        at = cached.at.isoformat() if cached.at else ""
        args = [cached.revision, cached.cursor, at, cached.source or "", self._ttl_ms]
        key = self.key(tenant, device_id)

        async def run(r: Client) -> Any:
            if self._script is None:
                self._script = r.register_script(_PUT)
            return await self._script(keys=[key], args=args)

        await self._cache.run(run)


ReadSource = Literal["postgres", "cache_tier"]


class CursorReader:
    """A device's cursor for the routes: Postgres, else the cache tier's copy."""

    def __init__(self, status: DeviceStatusStore, copies: RedisSyncCursors) -> None:
        self._status = status
        self._copies = copies

    async def read(self, tenant: str, device_id: str) -> tuple[CachedCursor | None, ReadSource]:
        """(the cursor or ``None`` when the BFF holds none, where it was read). Raises
        ``DatabaseUnavailable`` only when the cache tier cannot answer either."""
        try:
            status = await self._status.get(tenant, device_id)
        except DatabaseUnavailable as down:
            try:
                copy = await self._copies.get(tenant, device_id)
            except TierUnavailable:
                raise down from None
            return copy, "cache_tier"
        return (CachedCursor.of(status) if status else None), "postgres"
