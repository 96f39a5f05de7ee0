"""Domain events reach the actors they name (tenant + deviceId/propertyId) and wait until
handled; irrelevant or cross-tenant events are no-ops. Real ledger, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
import trio

from actors.config import ActorConfig
from actors.device import DeviceState
from actors.dispatch import route_domain_event
from actors.errors import OverloadedError
from actors.kinds import device, property_, standard_kinds
from actors.messages import GetState
from actors.notices import NoticeHub
from actors.property import TrackCacheKey, cache_entry_key
from actors.system import ActorSystem
from edge.bus.port import InboundEvent
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from ledger.appendlog import Ledger
from ledger.database import Database
from tests.support.fixtures import REDIS_URL
from tests.support.waiting import eventually


@pytest.fixture
async def env(
    db: Database, redis_prefix: str
) -> AsyncIterator[tuple[ActorSystem, RedisTier, RedisTier]]:
    cache = RedisTier("cache", REDIS_URL, redis_prefix, timeout=2.0)
    session = RedisTier("session", REDIS_URL, redis_prefix, timeout=2.0)
    await cache.open()
    await session.open()
    ledger = Ledger(db, metrics=Metrics())
    kinds = standard_kinds(ledger, cache, session, db=db, notices=NoticeHub())
    system = ActorSystem(kinds, ActorConfig(), Metrics())
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ledger.run)
            await nursery.start(system.run)
            yield system, cache, session
            nursery.cancel_scope.cancel()
    finally:
        await cache.close()
        await session.close()


def inbound(subject: str, tenant: str, **data: str) -> InboundEvent:
    return InboundEvent(
        subject=subject, event_id="ev-1", tenant=tenant, data=msgspec.Raw(msgspec.json.encode(data))
    )


async def test_property_event_invalidates_the_property_caches(
    env: tuple[ActorSystem, RedisTier, RedisTier],
) -> None:
    system, cache, _ = env
    prop = property_("tnt-a", "p1")
    await system.ask(prop, TrackCacheKey(name="dashboard"))
    key = cache_entry_key(cache, "tnt-a", "p1", "dashboard")
    await cache.run(lambda r: r.set(key, "{}"))
    event = inbound("melmastoon.alert.raised.v1", "tnt-a", tenantId="tnt-a", propertyId="p1")
    await route_domain_event(system, event)
    assert await cache.run(lambda r: r.exists(key)) == 0  # handled before returning
    assert (await system.ask(prop, GetState())).cache_keys == ()


async def test_events_for_another_tenant_or_nobody_are_ignored(
    env: tuple[ActorSystem, RedisTier, RedisTier],
) -> None:
    system, cache, _ = env
    prop = property_("tnt-a", "p1")
    await system.ask(prop, TrackCacheKey(name="dashboard"))
    key = cache_entry_key(cache, "tnt-a", "p1", "dashboard")
    await cache.run(lambda r: r.set(key, "{}"))
    mismatch = inbound("melmastoon.alert.raised.v1", "tnt-a", tenantId="tnt-b", propertyId="p1")
    await route_domain_event(system, mismatch)
    other = inbound("melmastoon.alert.raised.v1", "tnt-b", tenantId="tnt-b", propertyId="p1")
    await route_domain_event(system, other)  # tnt-b's p1 is another actor with no caches
    await route_domain_event(system, inbound("melmastoon.theme.published.v1", "tnt-a"))
    bad = InboundEvent(subject="x", event_id="e", tenant="tnt-a", data=msgspec.Raw(b"[1]"))
    await route_domain_event(system, bad)
    assert await cache.run(lambda r: r.exists(key)) == 1
    assert sorted(str(i.address) for i in system.actors()) == [
        "property/tnt-a/p1",
        "property/tnt-b/p1",
    ]


async def test_session_revoked_reloads_the_device_session_reference(
    env: tuple[ActorSystem, RedisTier, RedisTier],
) -> None:
    system, _, session = env
    dev = device("tnt-a", "d1")
    key = session.key("tnt-a", "device", "d1", "session")
    await session.run(lambda r: r.set(key, "s-1"))
    state: DeviceState = await system.ask(dev, GetState())
    assert state.session_ref == "s-1"
    await session.run(lambda r: r.delete(key))  # the session subsystem revoked it
    await route_domain_event(
        system,
        inbound("melmastoon.iam.session.revoked.v1", "tnt-a", deviceId="d1", propertyId="p1"),
    )
    state = await system.ask(dev, GetState())
    assert state.session_ref is None
    assert {i.address for i in system.actors()} == {dev, property_("tnt-a", "p1")}


async def test_an_overloaded_actor_raises_so_the_event_is_redelivered(
    env: tuple[ActorSystem, RedisTier, RedisTier],
) -> None:
    system, _, _ = env
    event = inbound("melmastoon.reservation.created.v1", "tnt-a", propertyId="p9")
    with pytest.raises(OverloadedError):
        await route_domain_event(system, event, timeout=0.0)
    # let the activation finish before teardown cancels it
    await eventually(lambda: [i.status for i in system.actors()] == ["running"])
