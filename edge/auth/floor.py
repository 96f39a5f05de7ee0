"""The app-version floor (DEPLOYMENT_TOPOLOGY §5): devices below it get 426 SYNC.VERSION_BLOCKED.

The floor is a runtime flag (``edge/flags.py``): field ``appVersionFloor`` of the flags hash in
the Redis cache tier (``<prefix>:_global:flags``), re-read at most every ``refresh_s`` (30 s);
while the cache tier is down the last value read stays in force.
"""

from __future__ import annotations

from edge.flags import APP_VERSION_FLOOR, BadVersion, RuntimeFlags, Version, parse_version
from edge.redis_tier import RedisTier

__all__ = ["FLAGS_FIELD", "BadVersion", "VersionFloor", "parse_version"]

FLAGS_FIELD = APP_VERSION_FLOOR


class VersionFloor:
    def __init__(
        self, cache: RedisTier, *, refresh_s: float = 30.0, flags: RuntimeFlags | None = None
    ) -> None:
        self._flags = flags if flags is not None else RuntimeFlags(cache, refresh_s=refresh_s)

    @property
    def flags_key(self) -> str:
        return self._flags.key

    async def current(self) -> Version | None:
        return (await self._flags.current()).app_version_floor

    async def blocks(self, app_version: str) -> bool:
        """Below the floor? A malformed version is refused (``BadVersion``) floor or not, so
        that what a client may send never depends on whether a floor happens to be set."""
        version = parse_version(app_version)
        floor = await self.current()
        return floor is not None and version < floor
