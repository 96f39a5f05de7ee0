"""Single-flight in the engine, across instances through the Redis lock, and
invalidation by domain events (real actor runtime, real ledger, real Redis, real simulator).
The devices' feeds are in memory (``MemoryDeviceFeed``): the ``dashboard.hint`` an event makes
the engine return is what the PropertyActor puts on its subscribed devices' feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
import trio

from actors.address import property_
from actors.dispatch import route_domain_event
from actors.messages import GetState
from actors.ports import InboundEvent
from actors.property import SubscribeDevice
from actors.system import ActorSystem
from actors.testing import MemoryDeviceFeed
from edge.dashboard.catalogue import plan_for
from edge.dashboard.composer import WidgetResult
from edge.dashboard.engine import DashboardEngine
from edge.dashboard.flight import Flight
from edge.dashboard.views import ViewSpec
from ledger.database import Database
from schemas.dashboard import DashboardHint
from tests.support.dashboard import (
    P,
    T,
    eventually_async,
    property_actors,
    reads,
    running_engine,
)
from tests.support.fixtures import REDIS_URL
from tests.support.procs import free_port
from tests.support.sim import SimHandle


@pytest.fixture
def feed() -> MemoryDeviceFeed:
    """The devices' feeds the PropertyActor fans hints out to."""
    return MemoryDeviceFeed()


@pytest.fixture
async def env(
    sim: SimHandle, db: Database, redis_prefix: str, feed: MemoryDeviceFeed
) -> AsyncIterator[tuple[DashboardEngine, ActorSystem]]:
    async with (
        running_engine(sim, REDIS_URL, redis_prefix) as engine,
        property_actors(db, engine, feed=feed) as (system, _),
    ):
        yield engine, system


def event(subject: str, tenant: str = T, prop: str = P, event_id: str = "ev-1") -> InboundEvent:
    data = msgspec.json.encode({"tenantId": tenant, "propertyId": prop})
    return InboundEvent(subject=subject, event_id=event_id, tenant=tenant, data=msgspec.Raw(data))


async def follow(system: ActorSystem, *devices: str) -> None:
    """``devices`` follow the property (their streams are sent its hints)."""
    for device_id in devices:
        await system.ask(property_(T, P), SubscribeDevice(device_id=device_id))


def hints(feed: MemoryDeviceFeed, device_id: str, tenant: str = T) -> list[DashboardHint]:
    """The ``dashboard.hint`` events on the device's feed, decoded (and checked: each keyed by
    its event id, scoped to its property)."""
    found = []
    for item in feed.items(tenant, device_id):
        if item.event != "dashboard.hint":
            continue
        hint = msgspec.convert(item.data, DashboardHint)
        assert item.key == f"hint:{hint.event_id}" and item.property_id == hint.property_id
        found.append(hint)
    return found


async def test_a_hundred_cold_requests_make_one_fan_out(
    sim: SimHandle, env: tuple[DashboardEngine, ActorSystem]
) -> None:
    engine, _ = env
    flights: list[Flight[WidgetResult]] = []

    async def request() -> None:
        flight = await engine.dashboard(T, P, "gm")
        await flight.wait()
        flights.append(flight)

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(request)
    assert len(flights) == 100
    assert all(len(f.items) == len(plan_for("gm").widgets) and not f.partial for f in flights)
    for upstream in ("property", "inventory", "pricing", "analytics", "ai"):
        assert reads(sim, upstream) == (2 if upstream == "property" else 1), upstream
    assert reads(sim, "reservation") == 4  # arrivals, departures, in-house, no-shows: once each


async def test_two_instances_compose_once_through_the_redis_lock(
    sim: SimHandle, aio_loop: object, redis_prefix: str
) -> None:
    """Two engines (two BFF instances) sharing the cache tier, each without an actor: the one
    that takes the lock composes, the other waits for its entry."""
    async with (
        running_engine(sim, REDIS_URL, redis_prefix) as one,
        running_engine(sim, REDIS_URL, redis_prefix) as two,
    ):
        sim.fault("analytics", "latency", latency_ms=200)
        first = one.start_dashboard(T, P, "gm")
        second = two.start_dashboard(T, P, "gm")
        await first.wait()
        await second.wait()
    assert {first.origin, second.origin} == {"composed", "peer"}
    assert [r.line for r in first.items] != [] and sorted(r.id for r in first.items) == sorted(
        r.id for r in second.items
    )
    assert reads(sim, "analytics") == 1


async def test_flights_per_role_and_view_are_separate(
    sim: SimHandle, env: tuple[DashboardEngine, ActorSystem]
) -> None:
    engine, system = env
    gm = await engine.dashboard(T, P, "gm")
    hk = await engine.dashboard(T, P, "housekeeping")
    board = await engine.view(T, P, ViewSpec("housekeepingBoard"))
    assert len({id(gm), id(hk), id(board)}) == 3
    for flight in (gm, hk, board):
        await flight.wait()
    assert {r.id for r in hk.items} == set(plan_for("housekeeping").widget_ids)
    state = await system.ask(property_(T, P), GetState())
    assert set(state.cache_keys) == {
        "dashboard:gm",
        "dashboard:housekeeping",
        "view:housekeepingBoard",
    }


async def test_a_domain_event_invalidates_what_it_affects_and_hints(
    sim: SimHandle, env: tuple[DashboardEngine, ActorSystem], feed: MemoryDeviceFeed
) -> None:
    engine, system = env
    await follow(system, "d1", "d2")
    fd = engine.dashboard_ref(T, P, "front_desk")
    arrivals = engine.view_ref(T, P, ViewSpec("arrivals"))
    board = engine.view_ref(T, P, ViewSpec("maintenanceBoard"))
    await (await engine.dashboard(T, P, "front_desk")).wait()
    await (await engine.view(T, P, ViewSpec("arrivals"))).wait()
    await (await engine.view(T, P, ViewSpec("maintenanceBoard"))).wait()

    async def all_cached() -> bool:
        return all([await engine.cache.get(r) is not None for r in (fd, arrivals, board)])

    await eventually_async(all_cached)
    await route_domain_event(system, event("melmastoon.reservation.checked_in.v1"))
    [hint] = hints(feed, "d1")
    assert hints(feed, "d2") == [hint]  # every device following the property hears it
    assert feed.items(T, "d1")[0].key == "hint:ev-1"
    assert hint.property_id == P and hint.subject == "melmastoon.reservation.checked_in.v1"
    assert "arrivals.summary" in hint.widgets and "maintenance.backlog" not in hint.widgets
    assert {"today", "arrivals"} <= set(hint.views) and "maintenanceBoard" not in hint.views
    assert await engine.cache.get(fd) is None
    assert await engine.cache.get(arrivals) is None
    assert await engine.cache.get(board) is not None  # a reservation does not touch work orders
    before = reads(sim, "reservation")
    again = await engine.dashboard(T, P, "front_desk")
    await again.wait()
    assert again.origin == "composed" and reads(sim, "reservation") == before + 4

    opened = event("melmastoon.maintenance.workorder.opened.v1", event_id="ev-2")
    await route_domain_event(system, opened)
    assert await engine.cache.get(board) is None
    assert [h.event_id for h in hints(feed, "d1")] == ["ev-1", "ev-2"]
    await route_domain_event(system, opened)  # redelivered: the devices are not hinted again
    assert [h.event_id for h in hints(feed, "d1")] == ["ev-1", "ev-2"]


async def test_an_event_during_a_composition_keeps_it_out_of_the_cache(
    sim: SimHandle, env: tuple[DashboardEngine, ActorSystem]
) -> None:
    engine, system = env
    sim.fault("housekeeping", "latency", latency_ms=150)
    running = await engine.view(T, P, ViewSpec("housekeepingBoard"))
    await route_domain_event(system, event("melmastoon.housekeeping.task.created.v1"))
    await running.wait()
    assert running.error is None and running.superseded
    fresh = await engine.view(T, P, ViewSpec("housekeepingBoard"))
    assert fresh is not running  # the superseded flight is not joined any more
    await fresh.wait()
    assert reads(sim, "housekeeping") == 2


async def test_events_of_another_tenant_or_property_touch_nothing(
    sim: SimHandle, env: tuple[DashboardEngine, ActorSystem], feed: MemoryDeviceFeed
) -> None:
    engine, system = env
    await follow(system, "d1")
    await (await engine.dashboard(T, P, "gm")).wait()

    async def cached() -> bool:
        return await engine.cache.get(engine.dashboard_ref(T, P, "gm")) is not None

    await eventually_async(cached)
    elsewhere = await engine.invalidate(T, "prop-demo-2", "melmastoon.reservation.created.v1", "e0")
    assert elsewhere.hint is not None and elsewhere.hint["propertyId"] == "prop-demo-2"
    await route_domain_event(system, event("melmastoon.reservation.created.v1", prop="prop-demo-2"))
    await route_domain_event(
        system, event("melmastoon.reservation.created.v1", tenant="tnt-other", event_id="e3")
    )
    assert feed.items(T, "d1") == [] and feed.items("tnt-other", "d1") == []
    assert await cached()


async def test_with_the_cache_tier_down_events_still_hint_and_dashboards_still_compose(
    sim: SimHandle, db: Database
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    feed = MemoryDeviceFeed()
    async with (
        running_engine(sim, dead, "dead") as engine,
        property_actors(db, engine, feed=feed) as (system, _),
    ):
        await follow(system, "d1")
        flight = await engine.dashboard(T, P, "housekeeping")
        await flight.wait()
        returned = await engine.invalidate(T, P, "melmastoon.housekeeping.task.created.v1", "e0")
        await route_domain_event(system, event("melmastoon.housekeeping.task.created.v1"))
    assert not flight.partial and flight.origin == "composed"
    assert returned.hint is not None and returned.hint["views"] == ["housekeepingBoard"]
    [hint] = hints(feed, "d1")
    assert hint.views == ["housekeepingBoard"] and hint.event_id == "ev-1"
