"""Property-wide stream events (API contract §6, §8, §9): the PropertyActor projects alerts and AI
suggestions into the inboxes and puts them on the feeds of the devices following the property —
exactly those, once, whichever instance (and however often) handles the domain event — with an
``sse.delivered.v1`` row in the ledger. Acknowledgements and decisions are recorded once. The
DeviceActor grants each device one stream. In-memory ports (``actors/testing.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from actors.address import device, property_
from actors.config import ActorConfig
from actors.device import AttachStream, CloseSession, DetachStream, OpenSession, StreamRefused
from actors.dispatch import route_domain_event
from actors.errors import DependencyUnavailable
from actors.messages import DomainEvent, GetState, Handled
from actors.ports import InboundEvent, RecordedAck, StreamGrant
from actors.property import (
    AcknowledgeAlert,
    DecideSuggestion,
    SubscribeDevice,
    SuggestionRecorded,
)
from actors.system import ActorSystem
from actors.testing import Outage
from schemas.actor_events import (
    ALERT_ACKNOWLEDGED,
    FEED_DELIVERED,
    SUGGESTION_DECIDED,
    AlertAcknowledged,
    FeedDelivered,
    SuggestionDecided,
)
from schemas.inbox import ALERT_RAISED, ALERT_RESOLVED, SUGGESTION_CREATED, SUGGESTION_INVALIDATED
from schemas.sse import FeedItem
from tests.support.actor_world import World, running_world

T, T2 = "tnt-a", "tnt-b"
P, P2 = "p1", "p2"
AT = "2026-03-01T08:00:00Z"
RESERVATION = "melmastoon.reservation.checked_in.v1"


@pytest.fixture
async def env() -> AsyncIterator[tuple[ActorSystem, World]]:
    async with running_world({"melmastoon.reservation.": ["dashboard"]}) as started:
        yield started


def inbound(subject: str, event_id: str = "ev-1", tenant: str = T, **data: Any) -> InboundEvent:
    body = msgspec.json.encode({"tenantId": tenant, **data})
    return InboundEvent(subject=subject, event_id=event_id, tenant=tenant, data=msgspec.Raw(body))


def raised(alert_id: str = "a1", prop: str = P, **extra: Any) -> dict[str, Any]:
    fields = {"alertId": alert_id, "severity": "high", "category": "maintenance"}
    return {"propertyId": prop, **fields, "title": "Leak in 204", "occurredAt": AT, **extra}


def created(suggestion_id: str = "s1", prop: str = P) -> dict[str, Any]:
    return {
        "propertyId": prop,
        "suggestionId": suggestion_id,
        "category": "pricing",
        "title": "Raise rate for Friday",
        "confidence": 0.82,
        "expiresAt": "2026-03-02T08:00:00Z",
        "occurredAt": AT,
    }


async def follow(system: ActorSystem, prop: str, *devices: str, tenant: str = T) -> None:
    for device_id in devices:
        await system.ask(property_(tenant, prop), SubscribeDevice(device_id=device_id))


def shown(world: World, device_id: str, tenant: str = T) -> list[tuple[str, str]]:
    """``(event, key)`` of what the device's feed holds, oldest first."""
    return [(i.event, i.key) for i in world.feed.items(tenant, device_id)]


def delivered(world: World, prop: str = P, tenant: str = T) -> list[FeedDelivered]:
    """The ``sse.delivered.v1`` rows of the property's fan-outs."""
    stream = f"property-feed:{prop}"
    rows = [e for e in world.ledger.events if (e.tenant, e.stream) == (tenant, stream)]
    decode = msgspec.json.Decoder(FeedDelivered).decode
    return [decode(e.payload) for e in rows if e.subject == FEED_DELIVERED]


# --- alerts and suggestions reach the property's devices ---------------------------------------


async def test_an_alert_reaches_exactly_the_propertys_subscribed_devices(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await follow(system, P, "d1", "d2")
    await follow(system, P2, "d3")  # another property of the tenant
    await follow(system, P, "d1", tenant=T2)  # another tenant's p1 and d1
    await route_domain_event(system, inbound(ALERT_RAISED, **raised()))
    expected = FeedItem(key="alert:a1", event="alert", data=raised(), property_id=P)
    assert world.feed.items(T, "d1") == [expected] and world.feed.items(T, "d2") == [expected]
    assert world.feed.items(T, "d3") == [] and world.feed.items(T2, "d1") == []
    assert world.inboxes.alert_ids(T, P) == ["a1"] and world.inboxes.alert_ids(T2, P) == []
    [row] = delivered(world)
    assert (row.key, row.event, row.device_ids) == ("alert:a1", "alert", ["d1", "d2"])
    assert row.data == expected.data and row.property_id == P
    assert delivered(world, P2) == [] and delivered(world, P, tenant=T2) == []


async def test_an_alert_handled_twice_is_shown_and_logged_once(
    env: tuple[ActorSystem, World],
) -> None:
    """A redelivered event is handled again: the device still sees it once."""
    system, world = env
    await follow(system, P, "d1")
    event = inbound(ALERT_RAISED, **raised())
    await route_domain_event(system, event)
    await route_domain_event(system, event)
    assert shown(world, "d1") == [("alert", "alert:a1")]
    assert len(delivered(world)) == 1


async def test_two_instances_handling_the_same_alert_show_it_once(
    env: tuple[ActorSystem, World],
) -> None:
    """Every instance consumes every domain event: both fan it out to the shared feeds (the
    second knows the followers from the ledger), and each device holds it once."""
    first, world = env
    await follow(first, P, "d1", "d2")
    second = ActorSystem(world.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(second.run)
        event = inbound(ALERT_RAISED, **raised())
        async with trio.open_nursery() as both:
            both.start_soon(route_domain_event, first, event)
            both.start_soon(route_domain_event, second, event)
        nursery.cancel_scope.cancel()
    assert shown(world, "d1") == shown(world, "d2") == [("alert", "alert:a1")]
    assert [a for a in world.feed.appends if a[2] == "alert:a1"] == [
        (T, ("d1", "d2"), "alert:a1")
    ] * 2
    assert len(delivered(world)) == 1


async def test_resolutions_and_suggestions_are_projected_and_fanned_out(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await follow(system, P, "d1")
    await route_domain_event(system, inbound(ALERT_RAISED, "e1", **raised()))
    await route_domain_event(system, inbound(SUGGESTION_CREATED, "e2", **created("s1")))
    await route_domain_event(system, inbound(SUGGESTION_CREATED, "e3", **created("s2")))
    assert world.inboxes.alert_ids(T, P) == ["a1"]
    assert world.inboxes.suggestion_ids(T, P) == ["s1", "s2"]
    resolved = {"propertyId": P, "alertId": "a1", "occurredAt": AT}
    await route_domain_event(system, inbound(ALERT_RESOLVED, "e4", **resolved))
    gone = {"propertyId": P, "suggestionId": "s1", "occurredAt": AT, "reason": "expired"}
    await route_domain_event(system, inbound(SUGGESTION_INVALIDATED, "e5", **gone))
    assert world.inboxes.alert_ids(T, P) == [] and world.inboxes.suggestion_ids(T, P) == ["s2"]
    assert shown(world, "d1") == [
        ("alert", "alert:a1"),
        ("ai.suggestion", "ai:s1"),
        ("ai.suggestion", "ai:s2"),
        ("alert.resolved", "alert-resolved:a1"),
        ("ai.suggestion.invalidated", "ai-invalidated:s1"),
    ]
    items = world.feed.items(T, "d1")
    assert items[1].data == created("s1")  # the domain event's data, without the tenant
    assert items[3].data == resolved
    assert items[4].data == {"suggestionId": "s1", "propertyId": P, "reason": "expired"}
    assert all(i.property_id == P and i.session_id is None for i in items)
    assert [r.event for r in delivered(world)] == [e for e, _ in shown(world, "d1")]
    ids = [i for i, _ in world.feed.entries(T, "d1")]
    assert ids == ["1-0", "2-0", "3-0", "4-0", "5-0"]  # strictly increasing per device


async def test_a_dashboard_hint_goes_to_the_propertys_devices(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await follow(system, P, "d1")
    await follow(system, P2, "d2")
    await route_domain_event(system, inbound(RESERVATION, "ev-9", propertyId=P))
    assert world.feed.items(T, "d1") == [
        FeedItem(
            key="hint:ev-9",
            event="dashboard.hint",
            data={"subject": RESERVATION, "eventId": "ev-9"},
            property_id=P,
        )
    ]
    assert world.feed.items(T, "d2") == []


@pytest.mark.parametrize(
    "bad",
    [{"alertId": 42}, {"alertId": "no spaces allowed"}, {"occurredAt": "yesterday"}],
    ids=["not-a-string", "bad-identifier", "bad-time"],
)
async def test_a_malformed_alert_is_skipped_without_crashing(
    env: tuple[ActorSystem, World], bad: dict[str, Any]
) -> None:
    system, world = env
    await follow(system, P, "d1")
    prop = property_(T, P)
    data = msgspec.Raw(msgspec.json.encode({"tenantId": T, **raised(**bad)}))
    reply = await system.ask(prop, DomainEvent(subject=ALERT_RAISED, event_id="e1", data=data))
    assert reply == Handled(acted=False)
    assert world.feed.items(T, "d1") == [] and world.inboxes.alert_ids(T, P) == []
    await route_domain_event(system, inbound(ALERT_RAISED, "e2", **raised("a2")))
    assert shown(world, "d1") == [("alert", "alert:a2")]
    [actor] = [a for a in system.actors() if a.address == prop]
    assert actor.restarts == 0 and actor.last_error is None  # skipped, not crashed


async def test_with_the_feed_down_the_event_is_redelivered_and_then_shown_once(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await follow(system, P, "d1")
    event = inbound(ALERT_RAISED, **raised())
    world.feed.outage = Outage(down=True)  # the feeds only; the inboxes are up
    with pytest.raises(DependencyUnavailable):
        await route_domain_event(system, event)
    assert world.feed.items(T, "d1") == []
    world.feed.outage = world.redis
    await route_domain_event(system, event)  # the redelivery
    assert shown(world, "d1") == [("alert", "alert:a1")]
    assert len(delivered(world)) == 1  # the first attempt's row stands
    assert world.inboxes.alert_ids(T, P) == ["a1"]


# --- acknowledgements and decisions ------------------------------------------------------------


async def test_acknowledging_an_alert_is_idempotent(env: tuple[ActorSystem, World]) -> None:
    """The first ack stands: a second (another operator, another device) returns it and writes
    nothing; one ``alert.acknowledged.v1`` row on ``alert:<id>``."""
    system, world = env
    await route_domain_event(system, inbound(ALERT_RAISED, **raised()))
    prop = property_(T, P)
    first = await system.ask(prop, AcknowledgeAlert(alert_id="a1", operator_id="x", device_id="d1"))
    again = await system.ask(prop, AcknowledgeAlert(alert_id="a1", operator_id="y", device_id="d2"))
    assert isinstance(first, RecordedAck) and isinstance(again, RecordedAck)
    assert first.created and not again.created and not first.forwarded
    assert again.ack == first.ack and first.ack.operator_id == "x"
    rows = [e for e in world.ledger.events if (e.tenant, e.stream) == (T, "alert:a1")]
    assert [e.subject for e in rows] == [ALERT_ACKNOWLEDGED]
    row = msgspec.json.decode(rows[0].payload, type=AlertAcknowledged)
    assert (row.alert_id, row.property_id, row.operator_id, row.device_id) == ("a1", P, "x", "d1")
    assert world.inboxes.acknowledged[(T, P)]["a1"] == first.ack
    assert world.acks.acks == {(T, "a1"): first.ack}


async def test_an_ack_with_postgres_down_is_refused_and_recorded_on_retry(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    prop = property_(T, P)
    await system.ask(prop, GetState())  # active before the outage
    ack = AcknowledgeAlert(alert_id="a1", operator_id="x", device_id="d1")
    world.postgres.down = True
    with pytest.raises(DependencyUnavailable):
        await system.ask(prop, ack)
    assert world.acks.acks == {} and world.ledger.subjects(T, "alert:a1") == []
    world.postgres.down = False
    assert (await system.ask(prop, ack)).created
    assert world.ledger.subjects(T, "alert:a1") == [ALERT_ACKNOWLEDGED]


async def test_a_decision_is_recorded_and_takes_the_suggestion_off_every_device(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await follow(system, P, "d1", "d2")
    await route_domain_event(system, inbound(SUGGESTION_CREATED, **created("s1")))
    decide = DecideSuggestion(
        suggestion_id="s1",
        decision="modify",
        operator_id="x",
        device_id="d1",
        modification={"rate": 180},
    )
    reply = await system.ask(property_(T, P), decide)
    assert reply == SuggestionRecorded(suggestion_id="s1", decision="modify")
    assert await system.ask(property_(T, P), decide) == reply  # a retry writes nothing more
    rows = [e for e in world.ledger.events if (e.tenant, e.stream) == (T, "suggestion:s1")]
    assert [e.subject for e in rows] == [SUGGESTION_DECIDED]
    row = msgspec.json.decode(rows[0].payload, type=SuggestionDecided)
    assert (row.decision, row.operator_id, row.device_id) == ("modify", "x", "d1")
    assert row.modification == {"rate": 180} and row.property_id == P
    assert world.inboxes.suggestion_ids(T, P) == []
    for device_id in ("d1", "d2"):
        assert shown(world, device_id) == [
            ("ai.suggestion", "ai:s1"),
            ("ai.suggestion.invalidated", "ai-invalidated:s1"),
        ]
        last = world.feed.items(T, device_id)[-1]
        assert last.data == {"suggestionId": "s1", "propertyId": P, "reason": "decided"}


# --- the device's one stream -------------------------------------------------------------------


async def sign_in(system: ActorSystem, device_id: str, session_id: str) -> None:
    opened = OpenSession(
        session_id=session_id, operator_id="x", role="front_desk", property_ids=[P], jkt="k"
    )
    await system.ask(device(T, device_id), opened)


def attach(token: str, session_id: str = "s-1", after: str | None = None) -> AttachStream:
    return AttachStream(token=token, node="node-1", session_id=session_id, after=after)


async def test_a_newer_stream_replaces_the_older(env: tuple[ActorSystem, World]) -> None:
    system, world = env
    await sign_in(system, "d1", "s-1")
    dev = device(T, "d1")
    first = await system.ask(dev, attach("t1"))
    assert first == StreamGrant(resume_from="0-0", gap=False, replaced=False)
    second = await system.ask(dev, attach("t2"))
    assert isinstance(second, StreamGrant) and second.replaced
    assert world.feed.replaced == [(T, "d1", "t1")]
    assert world.feed.owners[(T, "d1")].token == "t2"
    await system.ask(dev, DetachStream(token="t1"))  # the replaced one ends: t2 stays
    assert world.feed.owners[(T, "d1")].token == "t2"
    await system.ask(dev, DetachStream(token="t2"))
    assert (T, "d1") not in world.feed.owners


async def test_a_stream_resumes_after_its_last_event_id_or_is_told_of_a_gap(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    world.feed.maxlen = 2
    await sign_in(system, "d1", "s-1")
    await follow(system, P, "d1")
    for n in range(3):
        await route_domain_event(system, inbound(ALERT_RAISED, f"e{n}", **raised(f"a{n}")))
    assert [i for i, _ in world.feed.entries(T, "d1")] == ["2-0", "3-0"]  # 1-0 trimmed
    dev = device(T, "d1")
    resumed = await system.ask(dev, attach("t1", after="1-0"))
    assert resumed == StreamGrant(resume_from="1-0", gap=False, replaced=False)
    old = await system.ask(dev, attach("t2", after="0-0"))
    assert isinstance(old, StreamGrant) and old.gap and old.resume_from == "3-0"


async def test_a_closed_session_gets_no_stream(env: tuple[ActorSystem, World]) -> None:
    system, world = env
    await sign_in(system, "d1", "s-1")
    dev = device(T, "d1")
    await system.ask(dev, CloseSession(session_id="s-1", reason="sign_out"))
    assert await system.ask(dev, attach("t1")) == StreamRefused(reason="session_closed")
    assert (T, "d1") not in world.feed.owners


async def test_a_device_opening_streams_in_a_loop_is_throttled_and_holds_one(
    env: tuple[ActorSystem, World],
) -> None:
    system, world = env
    await sign_in(system, "d1", "s-1")
    dev = device(T, "d1")
    granted: list[str] = []
    for n in range(world.feed.max_opens + 5):
        reply = await system.ask(dev, attach(f"t{n}"))
        if isinstance(reply, StreamRefused):
            break
        granted.append(f"t{n}")
    assert reply == StreamRefused(reason="too_many_streams", retry_after=reply.retry_after)
    assert 0 < reply.retry_after <= world.feed.window
    assert len(granted) == world.feed.max_opens
    assert world.feed.owners[(T, "d1")].token == granted[-1]  # never more than one
    assert [t for _, _, t in world.feed.replaced] == granted[:-1]


async def test_a_session_closed_on_another_instance_gets_no_stream(
    env: tuple[ActorSystem, World],
) -> None:
    first, world = env
    second = ActorSystem(world.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(second.run)
        await sign_in(first, "d1", "s-1")
        await second.ask(device(T, "d1"), GetState())  # active there with the session open
        await first.ask(device(T, "d1"), CloseSession(session_id="s-1", reason="sign_out"))
        reply = await second.ask(device(T, "d1"), attach("t1"))
        nursery.cancel_scope.cancel()
    assert reply == StreamRefused(reason="session_closed")
