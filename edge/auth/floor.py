"""The app-version floor (DEPLOYMENT_TOPOLOGY §5): devices below it get 426 SYNC.VERSION_BLOCKED.

The floor lives in the flags hash of the Redis cache tier (``<prefix>:_global:flags``, field
``appVersionFloor``) and is re-read at most every ``refresh_s`` (30 s); while the cache tier is
down the last value read stays in force.
"""

from __future__ import annotations

import logging
import re

import trio

from edge.redis_tier import RedisTier, TierUnavailable

log = logging.getLogger("bff.auth.floor")

FLAGS_FIELD = "appVersionFloor"
_SEMVER = re.compile(r"^(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:[-+][0-9A-Za-z.+-]{1,64})?$")


class BadVersion(ValueError):
    """Not a semantic version (``MAJOR.MINOR.PATCH`` with an optional suffix)."""


def parse_version(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise BadVersion(text)
    return int(match[1]), int(match[2]), int(match[3])


class VersionFloor:
    def __init__(self, cache: RedisTier, *, refresh_s: float = 30.0) -> None:
        self._cache = cache
        self._refresh = refresh_s
        self._floor: tuple[int, int, int] | None = None
        self._read_at = -float("inf")
        self._lock = trio.Lock()

    @property
    def flags_key(self) -> str:
        return self._cache.global_key("flags")

    async def current(self) -> tuple[int, int, int] | None:
        if trio.current_time() - self._read_at >= self._refresh:
            async with self._lock:
                if trio.current_time() - self._read_at >= self._refresh:
                    await self._reload()
        return self._floor

    async def _reload(self) -> None:
        try:
            raw = await self._cache.run(lambda r: r.hget(self.flags_key, FLAGS_FIELD))
        except TierUnavailable as exc:
            log.warning("app-version floor not refreshed", extra={"error": str(exc)})
            self._read_at = trio.current_time()
            return
        self._read_at = trio.current_time()
        if raw is None:
            self._floor = None
            return
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            self._floor = parse_version(text)
        except BadVersion:
            log.error("ignoring malformed app-version floor", extra={"value": text[:64]})

    async def blocks(self, app_version: str) -> bool:
        """Below the floor? A malformed version is refused (``BadVersion``) floor or not, so
        that what a client may send never depends on whether a floor happens to be set."""
        version = parse_version(app_version)
        floor = await self.current()
        return floor is not None and version < floor
