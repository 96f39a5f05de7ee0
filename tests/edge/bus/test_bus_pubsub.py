"""Pub/Sub adapters against the real Pub/Sub emulator: publish with ordering keys, streaming pull
bridged into Trio, ack after the handler, redelivery on failure, dead letters, per-instance
subscriptions with a TTL removed on shutdown, and the relay surviving an emulator stop/start."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from actors.ports import InboundEvent
from edge.bus import open_publisher
from edge.bus.codec import LedgerEnvelope
from edge.bus.port import BusMessage, BusUnavailable, Publisher
from edge.bus.pubsub import (
    DEAD_LETTER_TOPIC,
    PubSubPublisher,
    PubSubSource,
    make_subscriber_client,
)
from edge.bus.relay import Relay
from edge.bus.subscriber import Subscriber
from edge.settings import load_settings
from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.model import NewEvent
from tests.support.procs import SilentServer
from tests.support.pubsub import PubSubEmulator

PROJECT = "bff-test"
REVOKED = "melmastoon.iam.session.revoked.v1"


@pytest.fixture
def emulator(pubsub_emulator: PubSubEmulator) -> PubSubEmulator:
    """The session's emulator (tests/support/pubsub.py): skipped without one, failed in CI."""
    return pubsub_emulator


@pytest.fixture
async def publisher(emulator: PubSubEmulator) -> AsyncIterator[PubSubPublisher]:
    pub = PubSubPublisher(PROJECT, emulator_host=emulator.host, timeout=5, create_topics=True)
    await pub.open()
    try:
        yield pub
    finally:
        await pub.close()


def revoked(tenant: str, key: str = "", n: int = 0) -> BusMessage:
    body = msgspec.json.encode({"tenantId": tenant, "n": n})
    return BusMessage(
        subject=REVOKED, data=body, event_id=str(uuid.uuid4()), tenant=tenant, ordering_key=key
    )


def source(emulator: PubSubEmulator, instance: str, topics: tuple[str, ...]) -> PubSubSource:
    return PubSubSource(
        PROJECT, instance, topics, emulator_host=emulator.host, create_topics=True, timeout=5
    )


async def start(nursery: trio.Nursery, src: PubSubSource, handler: Any, **kw: Any) -> Subscriber:
    subscriber = Subscriber(src, handler, backoff_max_s=0.3, **kw)
    nursery.start_soon(subscriber.run)
    with trio.fail_after(20):
        await subscriber.ready.wait()
    return subscriber


async def until(check: Any, timeout: float = 20) -> None:
    """Poll ``check`` until it holds: polling with a deadline, never a fixed sleep."""
    with trio.fail_after(timeout):
        while True:
            if check():
                return
            await trio.sleep(0.02)


async def subscription_exists(emulator: PubSubEmulator, path: str) -> bool:
    def get() -> bool:
        client = make_subscriber_client(emulator.host)
        try:
            client.get_subscription(subscription=path, timeout=5)
            return True
        except Exception:
            return False
        finally:
            client.close()

    return await trio.to_thread.run_sync(get)


async def test_every_instance_receives_in_key_order_and_acks(
    emulator: PubSubEmulator, publisher: PubSubPublisher
) -> None:
    got: dict[str, list[InboundEvent]] = defaultdict(list)

    def recorder(name: str) -> Any:
        async def handle(event: InboundEvent) -> None:
            got[name].append(event)

        return handle

    topics = ("melmastoon.iam",)
    async with trio.open_nursery() as nursery:
        await start(nursery, source(emulator, "inst-a", topics), recorder("a"))
        await start(nursery, source(emulator, "inst-b", topics), recorder("b"))
        sent = [revoked("tnt-a", key=f"k{i % 3}", n=i) for i in range(30)]
        await publisher.publish(sent)
        await until(lambda: len(got["a"]) >= 30 and len(got["b"]) >= 30)
        nursery.cancel_scope.cancel()
    for name in ("a", "b"):
        ids = list(dict.fromkeys(e.event_id for e in got[name]))
        assert sorted(ids) == sorted(m.event_id for m in sent)
        for key in ("k0", "k1", "k2"):
            ns = [
                msgspec.json.decode(e.data)["n"]
                for e in got[name]
                if e.event_id in {m.event_id for m in sent if m.ordering_key == key}
            ]
            assert ns == sorted(ns)
        assert {e.tenant for e in got[name]} == {"tnt-a"}


async def test_failed_handler_is_redelivered_and_poison_is_dead_lettered(
    emulator: PubSubEmulator, publisher: PubSubPublisher
) -> None:
    attempts: dict[str, int] = defaultdict(int)
    handled: list[str] = []

    async def flaky(event: InboundEvent) -> None:
        attempts[event.event_id] += 1
        if attempts[event.event_id] == 1:
            raise RuntimeError("actor busy")
        handled.append(event.event_id)

    # an observer of the dead-letter topic, created before anything is dead-lettered
    dead_seen: list[InboundEvent | dict[str, str]] = []
    dead_source = source(emulator, "dead-observer", (DEAD_LETTER_TOPIC,))

    class RawObserver(Subscriber):
        async def process(self, delivery: Any) -> None:
            dead_seen.append(dict(delivery.attributes))
            await delivery.ack()

    async with trio.open_nursery() as nursery:
        observer = RawObserver(dead_source, flaky, backoff_max_s=0.3)
        nursery.start_soon(observer.run)
        with trio.fail_after(20):
            await observer.ready.wait()
        await start(nursery, source(emulator, "inst-c", ("melmastoon.iam",)), flaky)
        good = revoked("tnt-a", key="k")
        poison = BusMessage(subject=REVOKED, data=b"{oops", event_id="poison-1", tenant="tnt-a")
        await publisher.publish([poison, good])
        await until(lambda: handled == [good.event_id] and len(dead_seen) == 1)
        nursery.cancel_scope.cancel()
    assert attempts[good.event_id] == 2
    assert "poison-1" not in attempts  # never reached the handler
    [dead] = dead_seen
    assert isinstance(dead, dict) and dead["eventId"] == "poison-1"
    assert dead["reason"].startswith("undecodable") and dead["sourceTopic"] == "melmastoon.iam"


async def test_subscription_has_a_ttl_and_is_deleted_on_shutdown(emulator: PubSubEmulator) -> None:
    src = source(emulator, "inst-ttl", ("melmastoon.alert",))
    path = src.subscription_path("melmastoon.alert")

    async def handle(event: InboundEvent) -> None:
        pass

    async with trio.open_nursery() as nursery:
        await start(nursery, src, handle)

        def ttl() -> int:
            client = make_subscriber_client(emulator.host)
            try:
                sub = client.get_subscription(subscription=path, timeout=5)
                return int(sub.expiration_policy.ttl.total_seconds())
            finally:
                client.close()

        assert await trio.to_thread.run_sync(ttl) == 86_400
        nursery.cancel_scope.cancel()
    assert not await subscription_exists(emulator, path)


async def test_publish_to_a_dead_broker_raises_bus_unavailable(
    emulator_java: list[str], tmp_path: Path
) -> None:
    emu = PubSubEmulator(emulator_java, tmp_path)
    pub = PubSubPublisher(PROJECT, emulator_host=emu.host, timeout=1, create_topics=True)
    await pub.open()
    try:
        await pub.publish([revoked("tnt-a", key="k")])
        emu.stop()
        with trio.fail_after(10), pytest.raises(BusUnavailable):
            await pub.publish([revoked("tnt-a", key="k")])
    finally:
        await pub.close()
        emu.stop()


class Gate:
    """Wraps the real publisher; while ``hold`` is set it refuses (the broker is 'still down')
    so the test can recreate its own subscription after the emulator restart before any
    message is published to the empty emulator."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.hold = False

    async def publish(self, messages: Any) -> None:
        if self.hold:
            raise BusUnavailable("held by the test")
        await self.inner.publish(messages)


@pytest.mark.slow
async def test_relay_survives_emulator_stop_start_without_loss_or_reordering(
    emulator_java: list[str], db: Database, tmp_path: Path
) -> None:
    emu = PubSubEmulator(emulator_java, tmp_path)
    topic = "melmastoon.bff.backoffice"
    received: list[LedgerEnvelope] = []

    async def observe(event: InboundEvent) -> None:
        received.append(msgspec.json.decode(event.data, type=LedgerEnvelope))

    pub = PubSubPublisher(PROJECT, emulator_host=emu.host, timeout=1, create_topics=True)
    await pub.open()
    gate = Gate(pub)
    ledger = Ledger(db)
    relay = Relay(
        db,
        gate,
        ledger=ledger,
        poll_s=0.02,
        backoff_min_s=0.05,
        backoff_max_s=0.3,
        publish_timeout_s=3,
    )
    streams = [f"device:d{i}" for i in range(5)]

    async def append(count: int) -> None:
        async def one_stream(stream: str) -> None:
            for _ in range(count):
                await ledger.append(
                    [
                        NewEvent(
                            tenant="tnt-a",
                            stream=stream,
                            payload={},
                            subject=f"{topic}.device.heartbeat.v1",
                        )
                    ]
                )

        async with trio.open_nursery() as inner:
            for stream in streams:
                inner.start_soon(one_stream, stream)

    def distinct() -> int:
        return len({e.event_id for e in received})

    try:
        async with trio.open_nursery() as nursery:
            before = trio.CancelScope()

            async def first_observer(task_status: trio.TaskStatus[None]) -> None:
                with before:
                    async with trio.open_nursery() as inner:
                        await start(inner, source(emu, "observer", (topic,)), observe)
                        task_status.started()

            await nursery.start(first_observer)
            await nursery.start(ledger.run)
            await nursery.start(relay.run)
            await append(6)
            await until(lambda: distinct() == 30)
            emu.stop()
            await append(6)
            await until(lambda: relay.failures >= 2)
            assert relay.position == 30  # rows wait in the ledger
            # The restarted emulator is empty: hold the relay until the test's own subscription
            # exists again (a fresh observer; the old one's client would reconnect only after
            # the streaming-pull reopen throttle).
            gate.hold = True
            emu.start()
            before.cancel()
            await start(nursery, source(emu, "observer", (topic,)), observe)
            gate.hold = False
            await until(lambda: distinct() == 60, timeout=30)
            await relay.wait_for(60)
            nursery.cancel_scope.cancel()
    finally:
        await pub.close()
        emu.stop()
    first_seen = list({e.event_id: e for e in received}.values())
    assert sorted(e.position for e in first_seen) == list(range(1, 61))
    for stream in streams:
        versions = [e.version for e in first_seen if e.stream == stream]
        assert versions == list(range(1, 13)), stream


async def test_the_publisher_talks_to_its_own_host_when_one_is_set(
    emulator: PubSubEmulator,
) -> None:
    """``BFF_PUBSUB_PUBLISH_HOST``: publishing goes there (here a port nobody listens on: the
    publish fails in its deadline), pulling stays on ``PUBSUB_EMULATOR_HOST``."""
    env = {
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "BFF_BUS": "pubsub",
        "BFF_PUBSUB_PROJECT": PROJECT,
        "BFF_BUS_PUBLISH_TIMEOUT_S": "1",
    }
    with SilentServer() as silent:
        hung = load_settings({**env, "BFF_PUBSUB_PUBLISH_HOST": f"127.0.0.1:{silent.port}"})
        async with open_publisher(hung) as pub:
            with trio.fail_after(10), pytest.raises(BusUnavailable):
                await pub.publish([revoked("tnt-a", key="k")])
        assert silent.accepted, "the publisher never connected to its own host"
    same = load_settings({**env, "BFF_PUBSUB_PUBLISH_HOST": emulator.host})
    async with open_publisher(same) as pub:
        await pub.publish([revoked("tnt-a", key="k")])
