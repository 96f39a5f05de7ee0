"""DeviceActor and PropertyActor on the in-memory ports (``actors/testing.py``): a killed or
passivated actor comes back with equal state, retries are recorded once, a stream written by
someone else is caught up on, and a dependency outage is answered, never a crash. The real
adapters behind the same ports are tested against real servers in ``tests/edge`` and
``tests/ledger``, and the whole process in ``tests/system``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import pytest
import trio

from actors.address import ActorAddress, device, property_
from actors.config import ActorConfig
from actors.device import (
    CloseSession,
    DeviceState,
    HeartbeatAck,
    OpenSession,
    RecordHeartbeat,
    RefreshSession,
)
from actors.errors import DependencyUnavailable
from actors.messages import DomainEvent, GetState, Handled
from actors.property import (
    CacheInvalidated,
    InvalidateCache,
    PropertyState,
    SubscribeDevice,
    TrackCacheKey,
    UnsubscribeDevice,
)
from actors.system import ActorSystem
from ledger.device_status import DeviceSyncStatus
from ledger.model import NewEvent
from schemas.actor_events import HEARTBEAT, SESSION_OPENED
from tests.support.actor_world import World
from tests.support.waiting import eventually

TENANT = "tnt-a"


def config(**overrides: float) -> ActorConfig:
    base = {"restart_min_s": 0.01, "restart_max_s": 0.05, "restart_jitter": 0.0}
    return ActorConfig(**{**base, **overrides})  # type: ignore[arg-type]


StartSystem = Callable[..., Awaitable[ActorSystem]]


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def start_system(world: World) -> AsyncIterator[StartSystem]:
    async with trio.open_nursery() as nursery:

        async def start(**overrides: float) -> ActorSystem:
            system = ActorSystem(world.kinds(), config(**overrides))
            await nursery.start(system.run)
            return system

        yield start
        nursery.cancel_scope.cancel()


@pytest.fixture
async def system(start_system: StartSystem) -> ActorSystem:
    return await start_system()


async def wait_restarted(system: ActorSystem, address: ActorAddress, restarts: int) -> None:
    """Until the actor's supervisor restarted it ``restarts`` times and it runs again."""

    def restarted() -> bool:
        info = [i for i in system.actors() if i.address == address]
        return bool(info) and info[0].restarts >= restarts and info[0].status == "running"

    await eventually(restarted)


async def heartbeat(
    system: ActorSystem, address: ActorAddress, command: str, app: str
) -> HeartbeatAck:
    ack: HeartbeatAck = await system.ask(
        address, RecordHeartbeat(command_id=command, app_version=app)
    )
    return ack


async def test_killed_device_actor_restarts_and_rehydrates_equal_state(
    system: ActorSystem, world: World
) -> None:
    ledger = world.ledger
    dev = device(TENANT, "dev-1")
    world.sessions.device_session[(TENANT, "dev-1")] = "sess-9"
    world.status.rows[(TENANT, "dev-1")] = DeviceSyncStatus(  # the cursor's authority
        tenant=TENANT,
        device_id="dev-1",
        last_seen_at=datetime.now(UTC),
        app_version=None,
        operator_id=None,
        heartbeat_count=0,
        cursor_version=42,
    )
    for n in range(5):
        ack = await heartbeat(system, dev, f"cmd-{n}", f"1.{n}")
        assert (ack.heartbeat_count, ack.duplicate, ack.sampled) == (n + 1, False, True)
    before: DeviceState = await system.ask(dev, GetState())
    assert (before.heartbeat_count, before.app_version, before.version) == (5, "1.4", 5)
    assert (before.session_ref, before.sync_cursor) == ("sess-9", 42)
    assert before.last_seen_at is not None and before.last_seen_at <= datetime.now(UTC)

    assert system.kill(dev)
    await wait_restarted(system, dev, 1)
    after: DeviceState = await system.ask(dev, GetState())
    assert after == before

    # the trail: every heartbeat is in the device's stream, in order, with its command id
    trail = await ledger.read_stream(TENANT, "device:dev-1")
    assert [e.version for e in trail] == [1, 2, 3, 4, 5]
    assert {e.subject for e in trail} == {HEARTBEAT}
    assert [msgspec.json.decode(e.payload)["commandId"] for e in trail] == [
        f"cmd-{n}" for n in range(5)
    ]
    assert all(e.device_id == "dev-1" for e in trail)
    ack = await heartbeat(system, dev, "cmd-5", "2.0")
    assert ack.heartbeat_count == 6
    assert len(await ledger.read_stream(TENANT, "device:dev-1")) == 6


async def test_tenants_are_separate_actors_and_streams(system: ActorSystem, world: World) -> None:
    ledger = world.ledger
    await heartbeat(system, device("tnt-a", "shared"), "c1", "1")
    await heartbeat(system, device("tnt-b", "shared"), "c1", "1")
    await heartbeat(system, device("tnt-b", "shared"), "c2", "1")
    assert len(await ledger.read_stream("tnt-a", "device:shared")) == 1
    assert len(await ledger.read_stream("tnt-b", "device:shared")) == 2


async def test_retried_heartbeat_is_recorded_once_even_across_a_kill(
    system: ActorSystem, world: World
) -> None:
    ledger = world.ledger
    dev = device(TENANT, "dev-2")
    first = await heartbeat(system, dev, "same", "1.0")
    system.kill(dev)
    await wait_restarted(system, dev, 1)
    again = await heartbeat(system, dev, "same", "1.0")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.heartbeat_count == 1
    assert len(await ledger.read_stream(TENANT, "device:dev-2")) == 1


async def test_refresh_session_reloads_the_redis_part(system: ActorSystem, world: World) -> None:
    dev = device(TENANT, "dev-3")
    state: DeviceState = await system.ask(dev, GetState())
    assert state.session_ref is None
    world.sessions.device_session[(TENANT, "dev-3")] = "s-1"
    state = await system.ask(dev, RefreshSession())
    assert state.session_ref == "s-1"


async def test_killed_property_actor_rehydrates_ledger_and_cache_parts(
    system: ActorSystem, world: World
) -> None:
    ledger = world.ledger
    prop = property_(TENANT, "prop-1")
    for dev in ("d1", "d2", "d3"):
        await system.ask(prop, SubscribeDevice(device_id=dev))
    again = await system.ask(prop, SubscribeDevice(device_id="d1"))
    assert not again.changed  # already subscribed: nothing recorded
    await system.ask(prop, UnsubscribeDevice(device_id="d2"))
    for name in ("dashboard.fd", "board.hk"):
        await system.ask(prop, TrackCacheKey(name=name))
    before: PropertyState = await system.ask(prop, GetState())
    assert before.subscribed_devices == ("d1", "d3")
    assert before.cache_keys == ("board.hk", "dashboard.fd")
    assert before.version == 4

    system.kill(prop)
    await wait_restarted(system, prop, 1)
    assert await system.ask(prop, GetState()) == before
    subjects = [
        e.subject.rsplit(".", 2)[-2] for e in await ledger.read_stream(TENANT, "property:prop-1")
    ]
    assert subjects == ["device_subscribed"] * 3 + ["device_unsubscribed"]

    result: CacheInvalidated = await system.ask(prop, InvalidateCache(names=["board.hk"]))
    assert (result.deleted, result.names) == (1, ["board.hk"])
    assert world.views.index[(TENANT, "prop-1")] == {"dashboard.fd"}
    state: PropertyState = await system.ask(prop, GetState())
    assert state.cache_keys == ("dashboard.fd",)


async def test_passivated_actor_reactivates_with_equal_state(start_system: StartSystem) -> None:
    system = await start_system(idle_timeout_s=0.2)
    dev = device(TENANT, "dev-4")
    await heartbeat(system, dev, "a", "1.0")
    await heartbeat(system, dev, "b", "1.1")
    before = await system.ask(dev, GetState())
    await eventually(lambda: not system.actors())  # passivated
    assert before == await system.ask(dev, GetState())
    ack = await heartbeat(system, dev, "c", "1.2")
    assert ack.heartbeat_count == 3


async def test_a_stream_written_elsewhere_is_caught_up_on(
    system: ActorSystem, world: World
) -> None:
    ledger = world.ledger
    dev = device(TENANT, "dev-5")
    opened = await system.ask(dev, open_session("s-1"))
    assert opened.changed
    foreign: dict[str, object] = {
        "sessionId": "s-2",
        "operatorId": "op-2",
        "role": "gm",
        "propertyIds": ["p1"],
        "at": "2026-01-01T00:00:00Z",
    }
    await ledger.append(
        [NewEvent(tenant=TENANT, stream="device:dev-5", subject=SESSION_OPENED, payload=foreign)]
    )  # another instance briefly hosting the same actor
    closed = await system.ask(dev, CloseSession(session_id="s-1", reason="sign_out"))
    assert closed.changed  # decided again after catching up with the foreign event
    state: DeviceState = await system.ask(dev, GetState())
    assert (state.session_id, state.closed_sessions, state.version) == ("s-2", ("s-1",), 3)


def open_session(session_id: str) -> OpenSession:
    return OpenSession(
        session_id=session_id, operator_id="op-1", role="front_desk", property_ids=["p1"], jkt="k"
    )


async def test_sessions_survive_a_kill_and_are_recorded_once(
    system: ActorSystem, world: World
) -> None:
    ledger = world.ledger
    dev = device(TENANT, "dev-6")
    assert (await system.ask(dev, open_session("s-1"))).changed
    assert not (await system.ask(dev, open_session("s-1"))).changed
    before: DeviceState = await system.ask(dev, GetState())
    system.kill(dev)
    await wait_restarted(system, dev, 1)
    assert await system.ask(dev, GetState()) == before
    assert (await system.ask(dev, CloseSession(session_id="s-1", reason="admin"))).changed
    assert not (await system.ask(dev, open_session("s-1"))).changed  # a closed one stays closed
    subjects = [
        e.subject.rsplit(".", 2)[-2] for e in await ledger.read_stream(TENANT, "device:dev-6")
    ]
    assert subjects == ["opened", "closed"]


# --- outages: answered, never a crash (FAILURE_MODES F-20) -----------------------------------


async def test_postgres_outage_is_answered_not_crashed_and_never_escalates(
    system: ActorSystem, world: World
) -> None:
    dev = device(TENANT, "dev-7")
    assert (await heartbeat(system, dev, "before", "1.0")).heartbeat_count == 1
    world.postgres.down = True
    for n in range(3 * system.config.max_restarts):  # far past the restart budget
        with pytest.raises(DependencyUnavailable) as caught:
            await heartbeat(system, dev, f"down-{n}", "1.0")
        assert caught.value.dependency == "postgres"
    (info,) = system.actors()
    assert (info.status, info.restarts, info.last_error) == ("running", 0, None)
    assert system.failed() == [] and (await system.health()).ok
    world.postgres.down = False
    assert (await heartbeat(system, dev, "after", "1.0")).heartbeat_count == 2


async def test_activation_during_an_outage_refuses_the_message_and_leaves_no_actor(
    system: ActorSystem, world: World
) -> None:
    world.postgres.down = True
    dev = device(TENANT, "dev-8")
    for _ in range(3 * system.config.max_restarts):
        with pytest.raises(DependencyUnavailable):
            await system.ask(dev, GetState())
    await eventually(lambda: not system.actors())  # not failed, not restarting: gone
    assert (await system.health()).ok
    world.postgres.down = False
    state: DeviceState = await system.ask(dev, GetState())
    assert state.device_id == "dev-8"


async def test_cache_outage_makes_an_invalidating_event_fail_for_redelivery(
    system: ActorSystem, world: World
) -> None:
    prop = property_(TENANT, "prop-2")
    world.views.affects = {"melmastoon.reservation.": ["view:arrivals"]}
    await system.ask(prop, TrackCacheKey(name="view:arrivals"))
    event = DomainEvent(subject="melmastoon.reservation.created.v1", event_id="e-1")
    world.redis.down = True
    with pytest.raises(DependencyUnavailable):
        await system.ask(prop, event)
    world.redis.down = False
    handled: Handled = await system.ask(prop, event)
    assert handled.acted and world.views.index[(TENANT, "prop-2")] == set()
    state: PropertyState = await system.ask(prop, GetState())
    assert state.cache_keys == ()
