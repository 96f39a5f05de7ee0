"""The embedded bus (Redis Streams) end to end against a real Redis: publish order, one consumer
group per instance (broadcast), ack only after the handler returned, redelivery, dead letters,
and consumer-group lifetime."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import trio

from actors.ports import EventHandler, InboundEvent
from edge.bus.port import BusMessage
from edge.bus.redis_streams import (
    RedisStreamsPublisher,
    RedisStreamsSource,
    dead_letter_key,
    stream_key,
)
from edge.bus.subscriber import Subscriber
from edge.redis_tier import RedisTier
from tests.support.waiting import eventually

REVOKED = "melmastoon.iam.session.revoked.v1"
TOPICS = ("melmastoon.iam", "melmastoon.alert")


def domain_event(tenant: str, subject: str = REVOKED, **data: object) -> BusMessage:
    body = msgspec.json.encode({"tenantId": tenant, **data})
    return BusMessage(subject=subject, data=body, event_id=str(uuid.uuid4()), tenant=tenant)


async def redis(tier: RedisTier, method: str, *args: Any, **kwargs: Any) -> Any:
    async def op(client: Any) -> Any:
        return await getattr(client, method)(*args, **kwargs)

    return await tier.run(op)


async def pending(tier: RedisTier, key: str, group: str) -> int:
    return int((await redis(tier, "xpending", key, group))["pending"])


async def settled(tier: RedisTier, key: str, group: str) -> bool:
    return await pending(tier, key, group) == 0


Handler = EventHandler


async def running(
    nursery: trio.Nursery, tier: RedisTier, instance: str, handler: Handler, **kw: Any
) -> Subscriber:
    source = RedisStreamsSource(tier, instance, TOPICS, block_ms=200, redeliver_ms=50)
    subscriber = Subscriber(source, handler, backoff_max_s=0.2, **kw)
    nursery.start_soon(subscriber.run)
    with trio.fail_after(5):
        await subscriber.ready.wait()
    return subscriber


async def test_publish_appends_to_the_topic_stream_in_order(tier: RedisTier) -> None:
    publisher = RedisStreamsPublisher(tier)
    messages = [
        BusMessage(
            subject="melmastoon.bff.backoffice.session.opened.v1",
            data=b'{"i":%d}' % i,
            event_id=f"e{i}",
            tenant="tnt-a",
            ordering_key="tnt-a:device:d1",
            attributes={"stream": "device:d1"},
        )
        for i in range(5)
    ]
    await publisher.publish(messages)
    entries = await redis(tier, "xrange", stream_key(tier.prefix, "melmastoon.bff.backoffice"))
    assert [f[b"eventId"] for _, f in entries] == [b"e0", b"e1", b"e2", b"e3", b"e4"]
    first = entries[0][1]
    assert first[b"subject"] == b"melmastoon.bff.backoffice.session.opened.v1"
    assert first[b"tenantId"] == b"tnt-a" and first[b"orderingKey"] == b"tnt-a:device:d1"
    assert first[b"stream"] == b"device:d1" and first[b"data"] == b'{"i":0}'


async def test_every_instance_gets_every_event_and_acks_after_handling(tier: RedisTier) -> None:
    got: dict[str, list[InboundEvent]] = {"one": [], "two": []}
    release = trio.Event()

    def recorder(name: str) -> Handler:
        async def handle(event: InboundEvent) -> None:
            await release.wait()  # still "handling": must not be acked yet
            got[name].append(event)

        return handle

    async with trio.open_nursery() as nursery:
        await running(nursery, tier, "one", recorder("one"))
        await running(nursery, tier, "two", recorder("two"))
        sent = [domain_event("tnt-a", sessionId="s1"), domain_event("tnt-b", sessionId="s2")]
        await RedisStreamsPublisher(tier).publish(sent)
        key = stream_key(tier.prefix, "melmastoon.iam")
        await eventually(lambda: pending(tier, key, "bff:one"), 5)
        assert got["one"] == []  # delivered, handler not finished, not acked
        release.set()
        await eventually(lambda: len(got["one"]) == 2 and len(got["two"]) == 2, 5)
        await eventually(lambda: settled(tier, key, "bff:one"), 5)
        await eventually(lambda: settled(tier, key, "bff:two"), 5)
        nursery.cancel_scope.cancel()
    for name in got:
        assert [e.event_id for e in got[name]] == [m.event_id for m in sent]
        assert [e.tenant for e in got[name]] == ["tnt-a", "tnt-b"]
        assert msgspec.json.decode(got[name][0].data) == {"tenantId": "tnt-a", "sessionId": "s1"}


async def test_failed_handler_gets_the_event_again_then_dead_letters(tier: RedisTier) -> None:
    attempts: list[str] = []
    handled: list[str] = []

    async def flaky(event: InboundEvent) -> None:
        attempts.append(event.event_id)
        if event.attributes.get("x") == "always-fails" or attempts.count(event.event_id) < 2:
            raise RuntimeError("actor not ready")
        handled.append(event.event_id)

    async with trio.open_nursery() as nursery:
        await running(nursery, tier, "one", flaky, max_attempts=3)
        once = domain_event("tnt-a")
        never = BusMessage(
            subject=REVOKED,
            data=b'{"tenantId":"tnt-a"}',
            event_id="bad",
            tenant="tnt-a",
            attributes={"x": "always-fails"},
        )
        await RedisStreamsPublisher(tier).publish([once, never])
        dead = dead_letter_key(tier.prefix)
        key = stream_key(tier.prefix, "melmastoon.iam")
        await eventually(lambda: handled and redis(tier, "xlen", dead), 10)
        await eventually(lambda: settled(tier, key, "bff:one"), 10)
        nursery.cancel_scope.cancel()
    assert handled == [once.event_id]
    assert attempts.count("bad") == 3
    [(_, fields)] = await redis(tier, "xrange", dead)
    assert fields[b"reason"].startswith(b"handler failed 3 times: RuntimeError")
    assert fields[b"attr.eventId"] == b"bad"


async def test_poison_message_is_dead_lettered_and_the_subscriber_goes_on(tier: RedisTier) -> None:
    handled: list[str] = []

    async def handle(event: InboundEvent) -> None:
        handled.append(event.event_id)

    async with trio.open_nursery() as nursery:
        await running(nursery, tier, "one", handle)
        key = stream_key(tier.prefix, "melmastoon.iam")
        await redis(tier, "xadd", key, {"subject": REVOKED, "eventId": "p1", "data": b"\xff{"})
        good = domain_event("tnt-a")
        await RedisStreamsPublisher(tier).publish([good])
        await eventually(lambda: handled, 5)
        await eventually(lambda: settled(tier, key, "bff:one"), 5)
        nursery.cancel_scope.cancel()
    assert handled == [good.event_id]
    [(_, fields)] = await redis(tier, "xrange", dead_letter_key(tier.prefix))
    assert fields[b"reason"].startswith(b"undecodable") and fields[b"data"] == b"\xff{"


async def test_groups_are_removed_on_shutdown_and_reaped_after_a_crash(tier: RedisTier) -> None:
    async def handle(event: InboundEvent) -> None:
        pass

    key = stream_key(tier.prefix, "melmastoon.iam")
    async with trio.open_nursery() as nursery:
        await running(nursery, tier, "clean", handle)
        await running(nursery, tier, "crashed", handle)
        nursery.cancel_scope.cancel()  # both retire: groups destroyed
    assert await redis(tier, "xinfo_groups", key) == []
    # A crashed instance leaves its group behind but its heartbeat key expires.
    await redis(tier, "xgroup_create", key, "bff:ghost", id="$", mkstream=True)
    async with trio.open_nursery() as nursery:
        await running(nursery, tier, "fresh", handle)
        names = {g["name"] for g in await redis(tier, "xinfo_groups", key)}
        assert names == {b"bff:fresh"}
        nursery.cancel_scope.cancel()


async def test_broker_down_at_start_does_not_block_and_recovers(
    aio_loop: object, tmp_path: Any
) -> None:
    from tests.support.procs import PrivateRedis

    server = PrivateRedis(tmp_path)
    tier = RedisTier("bus", server.url, "t", timeout=0.5)
    await tier.open()
    handled: list[str] = []

    async def handle(event: InboundEvent) -> None:
        handled.append(event.event_id)

    try:
        server.stop()
        async with trio.open_nursery() as nursery:
            source = RedisStreamsSource(tier, "one", TOPICS, block_ms=100, redeliver_ms=50)
            subscriber = Subscriber(source, handle, backoff_max_s=0.2)
            await nursery.start(subscriber.run)  # returns although Redis is down
            assert not subscriber.ready.is_set()
            server.start()
            with trio.fail_after(10):
                await subscriber.ready.wait()
            good = domain_event("tnt-a")
            await RedisStreamsPublisher(tier).publish([good])
            await eventually(lambda: handled, 5)
            nursery.cancel_scope.cancel()
        assert handled == [good.event_id]
    finally:
        await tier.close()
        server.stop()
