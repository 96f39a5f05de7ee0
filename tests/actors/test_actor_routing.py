"""Domain events reach the actors they name (tenant + deviceId/propertyId) and wait until
handled; irrelevant or cross-tenant events are no-ops. In-memory ports (``actors/testing.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from actors.address import device, property_
from actors.device import DeviceState
from actors.dispatch import route_domain_event
from actors.errors import OverloadedError
from actors.messages import GetState
from actors.ports import InboundEvent
from actors.property import TrackCacheKey
from actors.system import ActorSystem
from tests.support.actor_world import World, running_world
from tests.support.waiting import eventually


@pytest.fixture
async def env() -> AsyncIterator[tuple[ActorSystem, World]]:
    async with running_world({"melmastoon.alert.": ["dashboard"]}) as started:
        yield started


def inbound(subject: str, tenant: str, **data: str) -> InboundEvent:
    return InboundEvent(
        subject=subject, event_id="ev-1", tenant=tenant, data=msgspec.Raw(msgspec.json.encode(data))
    )


async def test_property_event_invalidates_the_property_caches(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    prop = property_("tnt-a", "p1")
    await system.ask(prop, TrackCacheKey(name="dashboard"))
    event = inbound("melmastoon.alert.raised.v1", "tnt-a", tenantId="tnt-a", propertyId="p1")
    await route_domain_event(system, event)
    assert world.views.index[("tnt-a", "p1")] == set()  # handled before returning
    assert (await system.ask(prop, GetState())).cache_keys == ()


async def test_events_for_another_tenant_or_nobody_are_ignored(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    prop = property_("tnt-a", "p1")
    await system.ask(prop, TrackCacheKey(name="dashboard"))
    mismatch = inbound("melmastoon.alert.raised.v1", "tnt-a", tenantId="tnt-b", propertyId="p1")
    await route_domain_event(system, mismatch)
    other = inbound("melmastoon.alert.raised.v1", "tnt-b", tenantId="tnt-b", propertyId="p1")
    await route_domain_event(system, other)  # tnt-b's p1 is another actor with no caches
    await route_domain_event(system, inbound("melmastoon.theme.published.v1", "tnt-a"))
    bad = InboundEvent(subject="x", event_id="e", tenant="tnt-a", data=msgspec.Raw(b"[1]"))
    await route_domain_event(system, bad)
    assert world.views.index[("tnt-a", "p1")] == {"dashboard"}
    assert world.views.invalidations == [("tnt-b", "p1", "ev-1")]
    assert sorted(str(i.address) for i in system.actors()) == [
        "property/tnt-a/p1",
        "property/tnt-b/p1",
    ]


async def test_session_revoked_reloads_the_device_session_reference(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    dev = device("tnt-a", "d1")
    world.sessions.device_session[("tnt-a", "d1")] = "s-1"
    state: DeviceState = await system.ask(dev, GetState())
    assert state.session_ref == "s-1"
    await route_domain_event(
        system,
        inbound(
            "melmastoon.iam.session.revoked.v1",
            "tnt-a",
            sessionId="s-1",
            deviceId="d1",
            propertyId="p1",
        ),
        sessions=world.sessions,
    )
    state = await system.ask(dev, GetState())
    assert state.session_ref is None
    assert ("tnt-a", "s-1") in world.sessions.revoked  # every instance rejects it now
    assert {i.address for i in system.actors()} == {dev, property_("tnt-a", "p1")}


async def test_an_overloaded_actor_raises_so_the_event_is_redelivered(
    env: tuple[ActorSystem, World],
) -> None:
    system, _ = env
    event = inbound("melmastoon.reservation.created.v1", "tnt-a", propertyId="p9")
    with pytest.raises(OverloadedError):
        await route_domain_event(system, event, timeout=0.0)
    # let the activation finish before teardown cancels it
    await eventually(lambda: [i.status for i in system.actors()] == ["running"])
