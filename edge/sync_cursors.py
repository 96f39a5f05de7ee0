"""The devices' sync cursors in the Redis cache tier (the ``SyncCursors`` port).

Key: ``<prefix>:<tenant>:device:<deviceId>:cursor``. A cursor is a cache: losing it costs the
device one fresh sync handshake, so it lives on the cache tier, not the session tier.
"""

from __future__ import annotations

from edge.redis_tier import RedisTier, text


class RedisSyncCursors:
    def __init__(self, cache: RedisTier) -> None:
        self._cache = cache

    def key(self, tenant: str, device_id: str) -> str:
        return self._cache.key(tenant, "device", device_id, "cursor")

    async def get(self, tenant: str, device_id: str) -> str | None:
        """The cursor, ``None`` when absent; raises ``TierUnavailable`` (a ``DependencyDown``)."""
        raw = await self._cache.run(lambda r: r.get(self.key(tenant, device_id)))
        return None if raw is None else text(raw)
