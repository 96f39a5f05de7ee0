"""The snapshot cache on real Redis: tenant and role isolation (F-30, including a planted entry),
generations that void entries composed before an invalidation, partial results kept shorter,
and a cache tier that is down reads through to the upstreams (F-17)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from edge.dashboard.cache import CacheRef, SnapshotCache, make_snapshot
from edge.dashboard.engine import DashboardEngine, Timing
from edge.dashboard.views import ViewSpec
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from schemas.identifiers import Role
from tests.support.dashboard import P, T, eventually_async, reads, running_engine
from tests.support.fixtures import REDIS_URL
from tests.support.procs import free_port
from tests.support.sim import SimHandle


@pytest.fixture
async def cache(aio_loop: object, redis_prefix: str) -> AsyncIterator[SnapshotCache]:
    tier = RedisTier("cache", REDIS_URL, redis_prefix, timeout=2.0)
    await tier.open()
    try:
        yield SnapshotCache(tier, Metrics(), timeout=1.0)
    finally:
        await tier.close()


def ref(tenant: str = T, prop: str = P, role: str = "gm") -> CacheRef:
    return CacheRef(tenant, prop, f"dashboard:{role}", f"dashboard:{role}", "fp")


async def put(cache: SnapshotCache, at: CacheRef, body: bytes, gen: int = 0) -> None:
    assert await cache.store(at, make_snapshot(at, gen, False, [body]), 30)


async def test_same_property_id_in_two_tenants_are_two_entries(cache: SnapshotCache) -> None:
    mine, theirs = ref("tnt-demo", "prop-x"), ref("tnt-other", "prop-x")
    await put(cache, mine, b'{"who":"demo"}')
    assert await cache.get(theirs) is None
    await put(cache, theirs, b'{"who":"other"}')
    got_mine, got_theirs = await cache.get(mine), await cache.get(theirs)
    assert got_mine is not None and bytes(got_mine.items[0]) == b'{"who":"demo"}'
    assert got_theirs is not None and bytes(got_theirs.items[0]) == b'{"who":"other"}'
    assert cache.entry_key(mine).split(":")[1] == "tnt-demo"


async def test_an_entry_planted_under_another_tenants_key_is_never_served(
    cache: SnapshotCache, redis_prefix: str
) -> None:
    """The attack F-30 fears: tenant A's snapshot bytes land under tenant B's key (a key bug,
    a bad migration). B's read refuses it because the entry names its own tenant."""
    victim, attacker = ref("tnt-demo", "prop-demo-1"), ref("tnt-other", "prop-demo-1")
    await put(cache, victim, b'{"secret":"demo guest list"}')
    client = redis.Redis.from_url(REDIS_URL)
    try:
        raw = client.get(cache.entry_key(victim))
        assert raw is not None
        client.set(cache.entry_key(attacker), raw)
    finally:
        client.close()
    assert await cache.get(attacker) is None
    assert await cache.get(victim) is not None


async def test_roles_do_not_share_entries(cache: SnapshotCache) -> None:
    await put(cache, ref(role="gm"), b'{"role":"gm"}')
    assert await cache.get(ref(role="housekeeping")) is None


async def test_a_generation_bump_voids_entries_composed_before_it(cache: SnapshotCache) -> None:
    at = ref()
    claim = await cache.claim(at, "token", 1.0)
    assert claim.locked and claim.gen == 0 and claim.snapshot is None
    await cache.bump(T, P, [at.family])  # a domain event while the composition ran
    await put(cache, at, b"{}", gen=claim.gen)  # … which then stores what it composed
    assert await cache.get(at) is None
    await put(cache, at, b"{}", gen=1)
    assert await cache.get(at) is not None


async def test_only_one_composer_holds_the_lock_and_release_is_owner_only(
    cache: SnapshotCache,
) -> None:
    at = ref()
    first = await cache.claim(at, "a", 5.0)
    second = await cache.claim(at, "b", 5.0)
    assert first.locked is True and second.locked is False
    await cache.release(at, "b")  # not the owner: no effect
    assert (await cache.peer_state(at))[1] is True
    await cache.release(at, "a")
    assert (await cache.peer_state(at))[1] is False


async def test_partial_dashboards_are_kept_shorter_than_complete_ones(
    sim: SimHandle, aio_loop: object, redis_prefix: str
) -> None:
    timing = Timing(dashboard_ttl_s=30.0, partial_ttl_s=2.0)
    async with running_engine(sim, REDIS_URL, redis_prefix, timing) as engine:
        sim.fault("pricing", "error")
        partial = await engine.dashboard(T, P, "front_desk")
        await partial.wait()
        complete = await engine.dashboard(T, P, "housekeeping")
        await complete.wait()
        await _stored(engine, "front_desk")
        await _stored(engine, "housekeeping")
        keys = [
            engine.cache.entry_key(engine.dashboard_ref(T, P, r))
            for r in ("front_desk", "housekeeping")
        ]
        client = redis.Redis.from_url(REDIS_URL)
        try:
            ttl_partial, ttl_complete = (client.pttl(k) for k in keys)
        finally:
            client.close()
    assert partial.partial and not complete.partial
    assert 0 < ttl_partial <= 2000 < 25_000 < ttl_complete <= 30_000


async def _stored(engine: DashboardEngine, role: Role) -> None:
    """The store happens right after the flight finishes: wait for it (bounded)."""

    async def stored() -> bool:
        return await engine.cache.get(engine.dashboard_ref(T, P, role)) is not None

    await eventually_async(stored, 2.0)


async def test_cache_tier_down_reads_through_to_the_upstreams(
    sim: SimHandle, aio_loop: object
) -> None:
    """F-17: nothing listens on the cache port; dashboards and views are still served."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_engine(sim, dead, "dead") as engine:
        first = await engine.dashboard(T, P, "gm")
        await first.wait()
        second = await engine.dashboard(T, P, "gm")
        await second.wait()
        board = await engine.view(T, P, ViewSpec("housekeepingBoard"))
        await board.wait()
    assert first.error is None and not first.partial and first.origin == "composed"
    assert second.origin == "composed"  # no cache: composed again, never an error
    assert board.error is None and board.items
    assert reads(sim, "analytics") == 2
