"""The bus subscriber in front of the actors: an event is acked only after routing returned, so
one whose routing failed comes back and is handled then. Real Redis Streams (the embedded
bus), the real subscriber and router; the actors on in-memory ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from actors.address import property_
from actors.dispatch import route_domain_event
from actors.errors import OverloadedError
from actors.ports import InboundEvent
from actors.property import TrackCacheKey
from actors.system import ActorSystem
from edge.bus.port import BusMessage
from edge.bus.redis_streams import RedisStreamsPublisher, RedisStreamsSource, stream_key
from edge.bus.subscriber import Subscriber
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from tests.support.actor_world import World, running_world
from tests.support.waiting import eventually


@pytest.fixture
async def env() -> AsyncIterator[tuple[ActorSystem, World]]:
    async with running_world({"melmastoon.alert.": ["dashboard"]}) as started:
        yield started


async def test_an_event_whose_routing_failed_is_redelivered_and_handled_then(
    env: tuple[ActorSystem, World], tier: RedisTier
) -> None:
    """The subscriber acks only after routing returned. An event whose actor had no room at the
    first delivery (``route_domain_event`` raised ``OverloadedError``) is nacked, delivered
    again by the bus (the embedded bus: real Redis Streams) and handled then."""
    system, world = env
    prop = property_("tnt-a", "p1")
    await system.ask(prop, TrackCacheKey(name="dashboard"))
    outcomes: list[str] = []

    async def route(event: InboundEvent) -> None:
        first = not outcomes  # the first delivery finds no room in time, as when overloaded
        try:
            await route_domain_event(system, event, timeout=0.0 if first else None)
        except OverloadedError:
            outcomes.append("overloaded")
            raise
        outcomes.append("handled")

    metrics = Metrics()
    topic = "melmastoon.alert"
    source = RedisStreamsSource(tier, "inst-1", (topic,), block_ms=50, redeliver_ms=50)
    subscriber = Subscriber(source, route, metrics=metrics)
    data = msgspec.json.encode({"tenantId": "tnt-a", "propertyId": "p1"})
    raised = BusMessage(
        subject="melmastoon.alert.raised.v1", data=data, event_id="ev-busy", tenant="tnt-a"
    )

    async def acked() -> bool:
        async def pending(client: Any) -> int:
            summary = await client.xpending(stream_key(tier.prefix, topic), source.group)
            return int(summary["pending"])

        return await tier.run(pending) == 0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber.run)
        with trio.fail_after(5):
            await subscriber.ready.wait()
        await RedisStreamsPublisher(tier).publish([raised])
        await eventually(lambda: outcomes == ["overloaded", "handled"], 10)
        await eventually(acked, 5)
        nursery.cancel_scope.cancel()
    assert world.views.invalidations == [("tnt-a", "p1", "ev-busy")]
    assert world.views.index[("tnt-a", "p1")] == set()
    assert metrics.bus_consumed.labels("redelivered")._value.get() == 1
    assert metrics.bus_consumed.labels("handled")._value.get() == 1
