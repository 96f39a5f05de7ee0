"""Runtime flags: values operators change without a deploy (DEPLOYMENT_TOPOLOGY "bff-backoffice-
flags", FAILURE_MODES F-40 "reduce sample rates via flag").

They live in one hash of the Redis cache tier, ``<prefix>:_global:flags``, shared by every
instance::

    redis-cli HSET bff:_global:flags heartbeatSampleRate 0.01 appVersionFloor 1.4.0
    redis-cli HDEL bff:_global:flags heartbeatSampleRate      # back to BFF_HEARTBEAT_SAMPLE_RATE

The hash is read with one ``HGETALL`` at most every ``refresh_s`` (``BFF_VERSION_FLOOR_REFRESH_S``,
30 s) for all flags at once: :meth:`RuntimeFlags.run` refreshes it in the background so that
synchronous readers (the DeviceActor's sampling decision) see changes within an interval, and
:meth:`RuntimeFlags.current` refreshes it on demand when the loop is not running (tools, tests).
A missing field means the environment's default; a malformed one is logged and ignored (the
last good value, else the default, stays). While the cache tier is down the last values read
stay in force.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

import msgspec
import trio

from edge.redis_tier import RedisTier, TierUnavailable

log = logging.getLogger("bff.flags")

APP_VERSION_FLOOR = "appVersionFloor"
HEARTBEAT_SAMPLE_RATE = "heartbeatSampleRate"
_SEMVER = re.compile(r"^(\d{1,6})\.(\d{1,6})\.(\d{1,6})(?:[-+][0-9A-Za-z.+-]{1,64})?$")

Version = tuple[int, int, int]


class BadVersion(ValueError):
    """Not a semantic version (``MAJOR.MINOR.PATCH`` with an optional suffix)."""


def parse_version(text: str) -> Version:
    match = _SEMVER.match(text)
    if not match:
        raise BadVersion(text)
    return int(match[1]), int(match[2]), int(match[3])


class Flags(msgspec.Struct, frozen=True):
    """One reading of the flags hash, with the environment's defaults filled in."""

    app_version_floor: Version | None
    heartbeat_sample_rate: float


def _parse_rate(text: str) -> float:
    rate = float(text)
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError(text)
    return rate


def decode_flags(
    raw: Mapping[bytes, bytes] | Mapping[bytes | str, bytes | str], previous: Flags, default: Flags
) -> Flags:
    """``raw`` (an ``HGETALL`` answer) over the defaults; a malformed field keeps ``previous``."""
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
    floor = default.app_version_floor
    if APP_VERSION_FLOOR in fields:
        try:
            floor = parse_version(fields[APP_VERSION_FLOOR])
        except BadVersion:
            log.error(
                "ignoring malformed app-version floor",
                extra={"value": fields[APP_VERSION_FLOOR][:64]},
            )
            floor = previous.app_version_floor
    rate = default.heartbeat_sample_rate
    if HEARTBEAT_SAMPLE_RATE in fields:
        try:
            rate = _parse_rate(fields[HEARTBEAT_SAMPLE_RATE])
        except ValueError:
            log.error(
                "ignoring malformed heartbeat sample rate (a number from 0 to 1)",
                extra={"value": fields[HEARTBEAT_SAMPLE_RATE][:64]},
            )
            rate = previous.heartbeat_sample_rate
    return Flags(app_version_floor=floor, heartbeat_sample_rate=rate)


class RuntimeFlags:
    """The flags hash of one process, re-read at most every ``refresh_s``."""

    def __init__(
        self, cache: RedisTier, *, refresh_s: float = 30.0, heartbeat_sample_rate: float = 0.05
    ) -> None:
        self._cache = cache
        self._refresh = refresh_s
        self._default = Flags(app_version_floor=None, heartbeat_sample_rate=heartbeat_sample_rate)
        self._flags = self._default
        self._read_at = -math.inf
        self._lock = trio.Lock()

    @property
    def key(self) -> str:
        return self._cache.global_key("flags")

    @property
    def latest(self) -> Flags:
        """The last reading, without I/O (kept fresh by :meth:`run`)."""
        return self._flags

    def heartbeat_sample_rate(self) -> float:
        """The share of heartbeats to record (what ``DeviceDeps.heartbeat_sample_rate`` calls)."""
        return self._flags.heartbeat_sample_rate

    async def current(self) -> Flags:
        """The flags, re-read first when the last reading is older than ``refresh_s``."""
        if trio.current_time() - self._read_at >= self._refresh:
            async with self._lock:
                if trio.current_time() - self._read_at >= self._refresh:
                    await self._reload()
        return self._flags

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Re-read the hash whenever the last reading is ``refresh_s`` old, until cancelled.
        The first reading is left to the first use (a request's floor check), as before."""
        task_status.started()
        started = trio.current_time()
        while True:
            last = self._read_at if self._read_at > -math.inf else started
            await trio.sleep(max(0.0, last + self._refresh - trio.current_time()))
            await self.current()

    async def _reload(self) -> None:
        try:
            raw = await self._cache.run(lambda r: r.hgetall(self.key))
        except TierUnavailable as exc:
            log.warning("runtime flags not refreshed", extra={"error": str(exc)})
            self._read_at = trio.current_time()
            return
        self._read_at = trio.current_time()
        flags = decode_flags(raw or {}, self._flags, self._default)
        if flags != self._flags:
            log.info(
                "runtime flags changed",
                extra={
                    "appVersionFloor": ".".join(map(str, flags.app_version_floor or ())) or None,
                    "heartbeatSampleRate": flags.heartbeat_sample_rate,
                },
            )
        self._flags = flags
