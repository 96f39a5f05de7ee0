"""DashboardSnapshot and WorkbenchView entries in the Redis cache tier.

Keys (all built by ``RedisTier.key``, so prefix and tenant come first — F-30: an entry can only
ever be found under the tenant that wrote it)::

    <prefix>:<tenant>:property:<pid>:cache:<name>   the entry (name: dashboard:<role>, view:…)
    <prefix>:<tenant>:property:<pid>:lock:<name>    who composes it now (SET NX PX, any instance)
    <prefix>:<tenant>:property:<pid>:cache-gen      hash: generation per family, bumped by events
    <prefix>:<tenant>:property:<pid>:last:<name>    last good board (bounded staleness, F-7/F-8)
    <prefix>:<tenant>:property:<pid>:cache-index    set of the names composed (invalidation)

This module is the only writer of these keys (the PropertyActor reaches them through the
engine's ``PropertyViews`` port).

Each entry also records tenant, property, name and generation, and a read accepts it only when
all match: a planted or stale entry is a miss, never someone else's data. The generation closes
the race between a composition that started before a domain event and its cache write landing
after the invalidation.

The cache is an accelerator, never a dependency (F-17): every call here has a short deadline
and a failure reads as "miss" / "not stored"; callers go to the upstreams.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import redis.exceptions
import trio

from edge.metrics import Metrics
from edge.redis_tier import Client, RedisTier, TierUnavailable, text

log = logging.getLogger("bff.dashboard.cache")
T = TypeVar("T")
INDEX_TTL_S = 24 * 3600  # the index outlives every entry it names; refreshed on each track
GENERATION_TTL_S = 24 * 3600  # outlives every entry (≤ stale_max_s) whose generation it checks

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Snapshot(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """A stored composition: encoded items (widget lines, or one view document) plus identity."""

    tenant: str
    property_id: str
    name: str
    gen: int
    fingerprint: str
    generated_at: float  # epoch seconds
    partial: bool
    items: list[msgspec.Raw]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


@dataclass(frozen=True)
class CacheRef:
    """One cache entry: whose, which, and which generation family invalidates it."""

    tenant: str
    property_id: str
    name: str  # "dashboard:gm", "view:arrivals:2026-11-21", …
    family: str  # "dashboard:gm", "view:arrivals", …
    fingerprint: str = ""


@dataclass(frozen=True)
class Claim:
    """What one round trip told a would-be composer."""

    snapshot: Snapshot | None  # a valid entry already exists: replay it
    gen: int | None  # the family's generation now (None: cache tier down)
    locked: bool | None  # True: we compose; False: a peer does; None: cache tier down


class SnapshotCache:
    """``retry_s``: after a failed call the tier is skipped (reads are misses, writes dropped)
    for that long, so a black-holed Redis costs one short timeout, not one per request.

    ``concurrency`` bounds this cache's calls in flight: redis-py's pool (shared with the auth
    chain on the same tier) fails at once when exhausted instead of waiting, so under a burst
    the waiting happens here, in Trio, within the same short deadline. Pool exhaustion is
    congestion, not an outage: it does not trip ``retry_s``.
    """

    def __init__(
        self,
        tier: RedisTier,
        metrics: Metrics,
        *,
        timeout: float,
        retry_s: float = 1.0,
        concurrency: int = 24,
    ) -> None:
        self.tier = tier
        self.timeout = timeout
        self.retry_s = retry_s
        self._metrics = metrics
        self._down_until = -math.inf
        self._limiter = trio.CapacityLimiter(concurrency)

    async def _run(self, op: Callable[[Client], Awaitable[T]]) -> T:
        if trio.current_time() < self._down_until:
            raise TierUnavailable(self.tier.name, "unreachable moments ago; not retried yet")
        with trio.move_on_after(self.timeout):
            async with self._limiter:
                try:
                    return await self.tier.run(op, self.timeout)
                except TierUnavailable as exc:
                    if not isinstance(exc.__cause__, redis.exceptions.MaxConnectionsError):
                        self._down_until = trio.current_time() + self.retry_s
                    raise
        raise TierUnavailable(self.tier.name, "no free connection within the deadline")

    # --- keys --------------------------------------------------------------------------------

    def entry_key(self, ref: CacheRef) -> str:
        return self.tier.key(ref.tenant, "property", ref.property_id, "cache", ref.name)

    def lock_key(self, ref: CacheRef) -> str:
        return self.tier.key(ref.tenant, "property", ref.property_id, "lock", ref.name)

    def last_key(self, ref: CacheRef) -> str:
        return self.tier.key(ref.tenant, "property", ref.property_id, "last", ref.name)

    def gen_key(self, tenant: str, property_id: str) -> str:
        return self.tier.key(tenant, "property", property_id, "cache-gen")

    # --- reads -------------------------------------------------------------------------------

    async def get(self, ref: CacheRef) -> Snapshot | None:
        """The valid entry for ``ref``, or ``None`` (absent, stale, foreign, or tier down)."""
        entry, gen_key = self.entry_key(ref), self.gen_key(ref.tenant, ref.property_id)

        async def op(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(entry)
                pipe.hget(gen_key, ref.family)
                result: list[Any] = await pipe.execute()
                return result

        try:
            raw, gen = await self._run(op)
        except TierUnavailable as exc:
            self._count(ref, "error", exc)
            return None
        found = self._valid(ref, raw, _int(gen))
        self._count(ref, "hit" if found else "miss")
        return found

    async def claim(self, ref: CacheRef, token: str, lock_s: float) -> Claim:
        """In one round trip: the current entry, the family's generation, and the lock."""
        entry, gen_key, lock = (
            self.entry_key(ref),
            self.gen_key(ref.tenant, ref.property_id),
            self.lock_key(ref),
        )

        async def op(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(entry)
                pipe.hget(gen_key, ref.family)
                pipe.set(lock, token, nx=True, px=max(1, int(lock_s * 1000)))
                result: list[Any] = await pipe.execute()
                return result

        try:
            raw, gen, locked = await self._run(op)
        except TierUnavailable as exc:
            self._count(ref, "error", exc)
            return Claim(None, None, None)
        current = _int(gen)
        return Claim(self._valid(ref, raw, current), current, bool(locked))

    async def peer_state(self, ref: CacheRef) -> tuple[Snapshot | None, bool]:
        """(the entry if a peer stored it, whether the peer still holds the lock)."""
        entry, gen_key, lock = (
            self.entry_key(ref),
            self.gen_key(ref.tenant, ref.property_id),
            self.lock_key(ref),
        )

        async def op(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(entry)
                pipe.hget(gen_key, ref.family)
                pipe.exists(lock)
                result: list[Any] = await pipe.execute()
                return result

        try:
            raw, gen, held = await self._run(op)
        except TierUnavailable:
            return None, False
        return self._valid(ref, raw, _int(gen)), bool(held)

    async def last_good(self, ref: CacheRef) -> Snapshot | None:
        key = self.last_key(ref)
        try:
            raw = await self._run(lambda r: r.get(key))
        except TierUnavailable as exc:
            self._count(ref, "error", exc)
            return None
        return self._valid(ref, raw, None)

    def _valid(self, ref: CacheRef, raw: Any, gen: int | None) -> Snapshot | None:
        if raw is None:
            return None
        try:
            snap = _decoder.decode(raw)
        except msgspec.DecodeError:
            log.warning("undecodable cache entry ignored", extra={"cacheName": ref.name})
            return None
        if (snap.tenant, snap.property_id, snap.name) != (ref.tenant, ref.property_id, ref.name):
            # Only reachable if something wrote a foreign entry under this tenant's key.
            log.error(
                "cache entry identity mismatch; ignored",
                extra={"tenant": ref.tenant, "property": ref.property_id, "cacheName": ref.name},
            )
            self._metrics.dashboard_cache.labels(_kind(ref), "foreign").inc()
            return None
        if gen is not None and snap.gen != gen:
            return None  # invalidated after it was composed
        if ref.fingerprint and snap.fingerprint != ref.fingerprint:
            return None  # another catalogue version composed it
        return snap

    # --- writes ------------------------------------------------------------------------------

    async def store(
        self, ref: CacheRef, snap: Snapshot, ttl_s: float, *, last_s: float | None = None
    ) -> bool:
        """Write the entry (and the last-good copy when ``last_s``); ``False`` if not stored."""
        body = _encoder.encode(snap)
        entry, last = self.entry_key(ref), self.last_key(ref)

        async def op(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(entry, body, px=max(1, int(ttl_s * 1000)))
                if last_s is not None:
                    pipe.set(last, body, px=max(1, int(last_s * 1000)))
                await pipe.execute()

        try:
            await self._run(op)
        except TierUnavailable as exc:
            self._count(ref, "error", exc)
            return False
        return True

    async def release(self, ref: CacheRef, token: str) -> None:
        """Drop the lock if it is still ours (it may have expired and been taken over)."""
        lock = self.lock_key(ref)
        try:
            await self._run(lambda r: r.eval(_RELEASE, 1, lock, token))
        except TierUnavailable as exc:
            log.info(
                "lock not released (it expires)", extra={"cacheName": ref.name, "error": str(exc)}
            )

    # --- the property's index of cache names (the PropertyViews port, via the engine) --------

    def index_key(self, tenant: str, property_id: str) -> str:
        return self.tier.key(tenant, "property", property_id, "cache-index")

    async def track(self, tenant: str, property_id: str, name: str) -> None:
        """Add ``name`` to the property's cache index; raises ``TierUnavailable``."""
        index = self.index_key(tenant, property_id)

        async def op(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.sadd(index, name)
                pipe.expire(index, INDEX_TTL_S)
                await pipe.execute()

        await self._run(op)

    async def names(self, tenant: str, property_id: str) -> list[str]:
        """The property's cache index; raises ``TierUnavailable``."""
        index = self.index_key(tenant, property_id)
        members: Any = await self.tier.run(lambda r: r.smembers(index), self.timeout)
        return sorted(text(m) for m in members)

    async def delete(self, tenant: str, property_id: str, names: Sequence[str]) -> int:
        """Delete entries and their index entries in one transaction; raises ``TierUnavailable``."""
        if not names:
            return 0
        entries = [self.tier.key(tenant, "property", property_id, "cache", n) for n in names]
        index = self.index_key(tenant, property_id)

        async def op(r: Client) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(*entries)
                pipe.srem(index, *names)
                deleted, _ = await pipe.execute()
            return int(deleted)

        return await self.tier.run(op, self.timeout)

    async def bump(self, tenant: str, property_id: str, families: list[str]) -> bool:
        """Invalidate every entry of ``families`` (present and in-flight compositions). Always
        tried, even right after a failure: a missed bump could leave stale entries behind."""
        if not families:
            return True
        key = self.gen_key(tenant, property_id)

        async def op(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for family in families:
                    pipe.hincrby(key, family, 1)
                pipe.expire(key, GENERATION_TTL_S)
                await pipe.execute()

        try:
            await self.tier.run(op, self.timeout)
        except TierUnavailable as exc:
            log.warning("cache generations not bumped", extra={"error": str(exc)})
            return False
        return True

    def _count(self, ref: CacheRef, result: str, exc: Exception | None = None) -> None:
        self._metrics.dashboard_cache.labels(_kind(ref), result).inc()
        if exc is not None:
            log.info("cache tier unavailable; reading through", extra={"error": str(exc)[:200]})


def make_snapshot(
    ref: CacheRef, gen: int, partial: bool, items: list[bytes], generated_at: float | None = None
) -> Snapshot:
    return Snapshot(
        tenant=ref.tenant,
        property_id=ref.property_id,
        name=ref.name,
        gen=gen,
        fingerprint=ref.fingerprint,
        generated_at=time.time() if generated_at is None else generated_at,
        partial=partial,
        items=[msgspec.Raw(item) for item in items],
    )


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _kind(ref: CacheRef) -> str:
    return "dashboard" if ref.name.startswith("dashboard:") else "view"
