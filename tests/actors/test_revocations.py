"""iam's revocations (``iam.session.revoked.v1``, ``iam.user.disabled.v1``) end exactly the
sessions they name: the revocation marker first, from ``(tenant, sessionId)`` alone, then the
device holding each session records the close and puts a force-logout on its feed (what its
stream is sent, on whichever instance holds it). On a shared device another operator's session
is never touched, and a malformed hint (``deviceId``) never makes a revocation fail open.
In-memory ports (``actors/testing.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import trio

from actors.address import device
from actors.config import ActorConfig
from actors.device import CloseSession, DeviceState, OpenSession
from actors.dispatch import route_domain_event
from actors.errors import DependencyUnavailable
from actors.messages import GetState
from actors.ports import InboundEvent
from actors.system import ActorSystem
from actors.testing import Outage
from schemas.actor_events import FEED_DELIVERED, SESSION_CLOSED, FeedDelivered, SessionClosed
from schemas.sessions import BackofficeSession
from schemas.sse import END_OF_STREAM, FeedItem
from tests.support.actor_world import World

T = "tnt-a"
X, Y = "opr-x", "opr-y"
REVOKED = "melmastoon.iam.session.revoked.v1"
DISABLED = "melmastoon.iam.user.disabled.v1"
_closed = msgspec.json.Decoder(SessionClosed)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def system(world: World) -> AsyncIterator[ActorSystem]:
    actors = ActorSystem(world.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(actors.run)
        yield actors
        nursery.cancel_scope.cancel()


def inbound(subject: str, **data: Any) -> InboundEvent:
    body = msgspec.json.encode({"tenantId": T, **data})
    return InboundEvent(subject=subject, event_id="ev-1", tenant=T, data=msgspec.Raw(body))


async def sign_in(system: ActorSystem, device_id: str, session_id: str, operator: str) -> None:
    """The device's first authenticated call with this session (what the auth chain does)."""
    opened = OpenSession(
        session_id=session_id, operator_id=operator, role="front_desk", property_ids=[], jkt="k"
    )
    assert (await system.ask(device(T, device_id), opened)).changed


async def state(system: ActorSystem, device_id: str) -> DeviceState:
    current: DeviceState = await system.ask(device(T, device_id), GetState())
    return current


def closed(world: World, device_id: str) -> list[tuple[str, str]]:
    """``(sessionId, reason)`` of the device's ``session.closed.v1`` events, in order."""
    stream = [e for e in world.ledger.events if (e.tenant, e.stream) == (T, f"device:{device_id}")]
    events = [_closed.decode(e.payload) for e in stream if e.subject == SESSION_CLOSED]
    return [(c.session_id, c.reason) for c in events]


@contextmanager
def notices(world: World, device_id: str) -> Iterator[list[FeedItem]]:
    """What the device's feed took while the block lasts: what its stream is sent, whichever
    instance holds it (the feed is shared by every instance)."""
    heard: list[FeedItem] = []
    before = world.feed.entries(T, device_id)
    mark = before[-1][0] if before else None
    yield heard
    heard.extend(item for _, item in world.feed.entries(T, device_id, after=mark))


def force_logouts(heard: list[FeedItem]) -> list[str]:
    return [
        n.data["reason"]
        for n in heard
        if n.event == "session" and n.data.get("kind") == "force_logout"
    ]


def delivered(world: World, device_id: str) -> list[FeedDelivered]:
    """The device's ``sse.delivered.v1`` rows (the delivery log)."""
    stream = f"device-feed:{device_id}"
    rows = [e for e in world.ledger.events if (e.tenant, e.stream) == (T, stream)]
    decode = msgspec.json.Decoder(FeedDelivered).decode
    return [decode(e.payload) for e in rows if e.subject == FEED_DELIVERED]


# --- iam.user.disabled.v1 ------------------------------------------------------------------


async def test_disabling_an_operator_on_a_shared_device_ends_only_their_session(
    system: ActorSystem, world: World
) -> None:
    """X works on desk d1, then Y signs in on d1: disabling X ends X's session (marker,
    ``session.closed.v1`` on d1, a force-logout on d1's streams) and leaves Y's alone."""
    await sign_in(system, "d1", "s-x", X)
    await sign_in(system, "d1", "s-y", Y)
    with notices(world, "d1") as heard:
        await route_domain_event(
            system,
            inbound(DISABLED, operatorId=X, sessionIds=["s-x"], deviceIds=["d1"]),
            sessions=world.sessions,
        )
    assert (T, "s-x") in world.sessions.revoked
    assert (T, "s-y") not in world.sessions.revoked
    assert closed(world, "d1") == [("s-x", "user_disabled")]
    assert force_logouts(heard) == ["user_disabled"]
    assert [n.session_id for n in heard] == ["s-x"]  # Y's stream (session s-y) goes on
    assert [(r.key, r.device_ids) for r in delivered(world, "d1")] == [
        ("session-closed:s-x", ["d1"])
    ]
    after = await state(system, "d1")
    assert after.session_id == "s-y" and after.session_ref == "s-y"


async def test_a_disabled_operators_sessions_are_revoked_before_any_device_hears_of_it(
    system: ActorSystem, world: World
) -> None:
    """The markers come from ``(tenant, sessionId)`` first: with the ledger down the device
    actor cannot even activate (the event is redelivered), yet every instance already rejects
    the sessions — including one this tier never saw opened."""
    async with trio.open_nursery() as nursery:  # X signed in through another instance
        elsewhere = ActorSystem(world.kinds(), ActorConfig())
        await nursery.start(elsewhere.run)
        await sign_in(elsewhere, "d1", "s-x", X)
        nursery.cancel_scope.cancel()
    world.postgres.down = True
    event = inbound(DISABLED, operatorId=X, sessionIds=["s-x", "s-elsewhere"])
    with pytest.raises(DependencyUnavailable):
        await route_domain_event(system, event, sessions=world.sessions)
    assert world.sessions.revoked == {(T, "s-x"), (T, "s-elsewhere")}
    assert closed(world, "d1") == []
    world.postgres.down = False
    await route_domain_event(system, event, sessions=world.sessions)  # the redelivery
    assert closed(world, "d1") == [("s-x", "user_disabled")]


async def test_without_session_ids_a_device_closes_its_session_only_if_it_is_the_operators(
    system: ActorSystem, world: World
) -> None:
    """An event naming only the operator falls back to the operator's devices; each closes its
    current session only if that session is the disabled operator's."""
    await sign_in(system, "d1", "s-x1", X)
    await sign_in(system, "d2", "s-x2", X)
    await sign_in(system, "d2", "s-y2", Y)  # Y took over d2; d2 is still in X's index
    await route_domain_event(system, inbound(DISABLED, operatorId=X), sessions=world.sessions)
    assert closed(world, "d1") == [("s-x1", "user_disabled")]
    assert closed(world, "d2") == []
    assert (T, "s-y2") not in world.sessions.revoked
    assert (await state(system, "d2")).session_id == "s-y2"


async def test_a_closed_session_takes_its_device_out_of_the_operators_index(
    system: ActorSystem, world: World
) -> None:
    """``operator:<op>:devices`` loses a device when the operator's session there closes
    (unless the device's current session is still theirs)."""
    sessions = world.sessions
    await sign_in(system, "d1", "s-x", X)
    await sign_in(system, "d1", "s-y", Y)
    await sign_in(system, "d2", "s-x2", X)
    await sign_in(system, "d2", "s-x3", X)  # X again on d2: two sessions of X there
    assert await sessions.devices_of(T, X) == ["d1", "d2"]
    await route_domain_event(system, inbound(REVOKED, sessionId="s-x"), sessions=sessions)
    await route_domain_event(system, inbound(REVOKED, sessionId="s-x2"), sessions=sessions)
    assert await sessions.devices_of(T, X) == ["d2"]  # d2's current session is still X's
    assert await sessions.devices_of(T, Y) == ["d1"]
    await route_domain_event(system, inbound(REVOKED, sessionId="s-x3"), sessions=sessions)
    await route_domain_event(system, inbound(REVOKED, sessionId="s-y"), sessions=sessions)
    assert await sessions.devices_of(T, X) == []
    assert await sessions.devices_of(T, Y) == []


async def test_memory_tier_close_keeps_the_index_of_the_devices_current_operator(
    world: World,
) -> None:
    """The in-memory tier on its own: closing a session that is not the device's current one
    leaves the device's reference alone, and the device stays in the index of the operator
    whose session is current there."""
    sessions = world.sessions

    def blob(sid: str, operator: str) -> BackofficeSession:
        return BackofficeSession(
            session_id=sid,
            tenant=T,
            operator_id=operator,
            device_id="d1",
            role="front_desk",
            property_ids=(),
            jkt="k",
            opened_at=datetime(2026, 1, 1, tzinfo=UTC),
        )

    await sessions.open(blob("s-x", X))
    await sessions.open(blob("s-y", Y))
    await sessions.close(T, "s-x", "d1")
    assert await sessions.current(T, "d1") == "s-y"
    assert await sessions.devices_of(T, X) == [] and await sessions.devices_of(T, Y) == ["d1"]
    assert await sessions.revoke(T, "s-x") == "d1"  # the marker remembers the holder
    assert await sessions.revoke(T, "s-never-seen") is None
    assert (T, "s-never-seen") in sessions.revoked


# --- iam.session.revoked.v1 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "hint",
    [{"deviceId": "not a device/*"}, {"deviceId": 42}, {}, {"deviceId": "d2"}],
    ids=["malformed", "not-a-string", "missing", "another-device"],
)
async def test_a_session_revocation_reaches_the_device_that_holds_the_session(
    system: ActorSystem, world: World, hint: dict[str, Any]
) -> None:
    """Revoked by ``(tenant, sessionId)`` whatever ``deviceId`` says; the force-logout goes to
    the device holding the session, and a wrongly named device's own session survives."""
    await sign_in(system, "d1", "s-x", X)
    await sign_in(system, "d2", "s-y", Y)
    with notices(world, "d1") as holder, notices(world, "d2") as other:
        await route_domain_event(
            system,
            inbound(REVOKED, sessionId="s-x", operatorId=X, reason="security", **hint),
            sessions=world.sessions,
        )
    assert (T, "s-x") in world.sessions.revoked
    assert closed(world, "d1") == [("s-x", "security")]
    assert force_logouts(holder) == ["security"] and force_logouts(other) == []
    assert closed(world, "d2") == [] and (T, "s-y") not in world.sessions.revoked
    assert (await state(system, "d1")).session_id is None


async def test_a_session_the_tier_does_not_know_is_revoked_and_told_only_to_its_holder(
    system: ActorSystem, world: World
) -> None:
    """No blob for the session (the tier lost it, or never saw it): the marker is written all
    the same, and the device the event names closes the session only if it holds it — a
    device whose current session is another operator's hears nothing."""
    await sign_in(system, "d1", "s-x", X)
    await sign_in(system, "d2", "s-y", Y)
    world.sessions.sessions.clear()  # the blobs are gone; the ledger still knows
    world.sessions.device_session.clear()
    with notices(world, "d1") as holder, notices(world, "d2") as other:
        await route_domain_event(
            system, inbound(REVOKED, sessionId="s-x", deviceId="d1"), sessions=world.sessions
        )
        await route_domain_event(
            system, inbound(REVOKED, sessionId="s-x9", deviceId="d2"), sessions=world.sessions
        )
    assert {(T, "s-x"), (T, "s-x9")} == world.sessions.revoked
    assert closed(world, "d1") == [("s-x", "revoked")] and force_logouts(holder) == ["revoked"]
    assert closed(world, "d2") == [] and force_logouts(other) == []
    assert (await state(system, "d2")).session_id == "s-y"


@pytest.mark.parametrize("session", [{"sessionId": "bad id*"}, {"sessionId": ["s-x"]}, {}], ids=str)
async def test_a_revocation_without_a_well_formed_session_id_is_dropped_and_counted(
    system: ActorSystem, world: World, session: dict[str, Any]
) -> None:
    """Nothing to revoke by: logged, counted, acked — and the device's current session (maybe
    someone else's) is not closed in its place."""
    await sign_in(system, "d1", "s-x", X)
    counter = system.metrics.revocations_dropped.labels(REVOKED)
    before = counter._value.get()
    await route_domain_event(
        system, inbound(REVOKED, deviceId="d1", **session), sessions=world.sessions
    )
    assert counter._value.get() == before + 1
    assert world.sessions.revoked == set() and closed(world, "d1") == []
    assert (await state(system, "d1")).session_id == "s-x"


async def test_malformed_entries_of_session_ids_are_counted_and_the_rest_revoked(
    system: ActorSystem, world: World
) -> None:
    await sign_in(system, "d1", "s-x", X)
    counter = system.metrics.revocations_dropped.labels(DISABLED)
    before = counter._value.get()
    await route_domain_event(
        system,
        inbound(DISABLED, operatorId=X, sessionIds=["bad id*", 7, "s-x"]),
        sessions=world.sessions,
    )
    assert counter._value.get() == before + 2
    assert world.sessions.revoked == {(T, "s-x")}
    assert closed(world, "d1") == [("s-x", "user_disabled")]


async def test_a_sign_out_ends_the_sessions_streams_without_a_force_logout(
    system: ActorSystem, world: World
) -> None:
    """The device signing out itself: its session's streams just close (``_end``)."""
    await sign_in(system, "d1", "s-x", X)
    with notices(world, "d1") as heard:
        await system.ask(device(T, "d1"), CloseSession(session_id="s-x", reason="sign_out"))
    assert [(n.event, n.key, n.session_id) for n in heard] == [
        (END_OF_STREAM, "session-closed:s-x", "s-x")
    ]
    assert force_logouts(heard) == []
    assert closed(world, "d1") == [("s-x", "sign_out")]


def second_instance(world: World) -> World:
    """Another instance's ports: the same Postgres (ledger) and Redis (sessions, feeds)."""
    other = World(postgres=world.postgres, redis=world.redis)
    other.ledger, other.sessions, other.feed = world.ledger, world.sessions, world.feed
    return other


async def test_each_instance_tells_the_devices_stream_even_when_another_recorded_the_close(
    world: World,
) -> None:
    """Every instance consumes the event and hosts its own DeviceActor for the device; only one
    records ``session.closed.v1``, but both put the force-logout on the device's feed (shared
    by every instance): the device's stream, wherever it is, is sent it once."""
    other = second_instance(world)
    first = ActorSystem(world.kinds(), ActorConfig())
    second = ActorSystem(other.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        await nursery.start(second.run)
        await sign_in(first, "d1", "s-x", X)
        assert (await state(second, "d1")).session_id == "s-x"  # activated with it open
        event = inbound(REVOKED, sessionId="s-x", deviceId="d1", reason="security")
        with notices(world, "d1") as heard:
            await route_domain_event(first, event, sessions=world.sessions)
            await route_domain_event(second, event, sessions=other.sessions)
        assert force_logouts(heard) == ["security"]  # once
        offered = [a for a in world.feed.appends if a[2] == "session-closed:s-x"]
        assert offered == [(T, ("d1",), "session-closed:s-x")] * 2  # by both instances
        assert closed(world, "d1") == [("s-x", "security")]  # recorded once
        assert len(delivered(world, "d1")) == 1  # and logged once
        nursery.cancel_scope.cancel()


async def test_a_force_logout_one_instance_could_not_push_is_pushed_by_the_other(
    world: World,
) -> None:
    """The instance that records the close finds the feed down (the event is redelivered to
    it); the other instance, whose actor held the session, still puts the force-logout on the
    feed when the event reaches it."""
    other = second_instance(world)
    first = ActorSystem(world.kinds(), ActorConfig())
    second = ActorSystem(other.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        await nursery.start(second.run)
        await sign_in(first, "d1", "s-x", X)
        assert (await state(second, "d1")).session_id == "s-x"
        event = inbound(REVOKED, sessionId="s-x", deviceId="d1", reason="security")
        with notices(world, "d1") as heard:
            world.feed.outage = Outage(down=True)  # only the feeds: the session tier is up
            with pytest.raises(DependencyUnavailable):
                await route_domain_event(first, event, sessions=world.sessions)
            world.feed.outage = world.redis
            assert closed(world, "d1") == [("s-x", "security")]  # recorded before the push
            assert world.feed.items(T, "d1") == []
            await route_domain_event(second, event, sessions=other.sessions)
        assert force_logouts(heard) == ["security"]
        assert (T, "s-x") in world.sessions.revoked
        nursery.cancel_scope.cancel()


async def test_a_force_logout_the_feed_missed_is_pushed_when_the_close_is_retried(
    system: ActorSystem, world: World
) -> None:
    """One instance: the close is recorded, then the feed is down (the event is redelivered).
    The redelivery must still put the force-logout on the device's feed."""
    await sign_in(system, "d1", "s-x", X)
    event = inbound(REVOKED, sessionId="s-x", deviceId="d1", reason="security")
    world.feed.outage = Outage(down=True)
    with pytest.raises(DependencyUnavailable):
        await route_domain_event(system, event, sessions=world.sessions)
    world.feed.outage = world.redis
    with notices(world, "d1") as heard:
        await route_domain_event(system, event, sessions=world.sessions)  # the redelivery
    assert force_logouts(heard) == ["security"]
