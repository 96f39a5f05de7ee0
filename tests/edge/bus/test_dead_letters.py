"""Dead letters on both buses (FAILURE_MODES F-38): what two instances park is listed, replayed
once to its topic (each instance receives it again) and then removed with its copies; a dry
run changes nothing; the embedded store trims entries older than 7 days and its depth reaches
``bff_bus_dead_letters``; the Pub/Sub dead-letter subscription keeps messages 7 days and never
expires; and ``./ops/bus`` (``python -m ops.buscli``) does the same from the command line."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import msgspec
import redis as redis_sync
import trio

from actors.ports import InboundEvent
from edge.bus.dead_letters import DeadLetterStore
from edge.bus.port import BusMessage, BusSource
from edge.bus.pubsub import (
    DEAD_LETTER_SUBSCRIPTION,
    PubSubPublisher,
    PubSubSource,
    make_subscriber_client,
)
from edge.bus.pubsub_dead_letters import PubSubDeadLetters
from edge.bus.redis_dead_letters import RedisDeadLetters
from edge.bus.redis_streams import (
    RedisStreamsPublisher,
    RedisStreamsSource,
    dead_letter_key,
    stream_key,
)
from edge.bus.subscriber import Subscriber
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from tests.support.fixtures import REDIS_URL
from tests.support.procs import ROOT
from tests.support.pubsub import PubSubEmulator
from tests.support.waiting import eventually

REVOKED = "melmastoon.iam.session.revoked.v1"
TOPIC = "melmastoon.iam"


def event(tenant: str = "tnt-a") -> BusMessage:
    body = msgspec.json.encode({"tenantId": tenant, "sessionId": "s-1"})
    return BusMessage(subject=REVOKED, data=body, event_id=str(uuid.uuid4()), tenant=tenant)


class Handler:
    """Fails every event until ``fixed``; then records what it handled."""

    def __init__(self) -> None:
        self.fixed = False
        self.handled: list[str] = []

    async def __call__(self, event: InboundEvent) -> None:
        if not self.fixed:
            raise RuntimeError("actor down")
        self.handled.append(event.event_id)


async def subscribe(nursery: trio.Nursery, source: BusSource, handler: Handler, **kw: Any) -> None:
    """A subscriber that dead-letters at the first failure."""
    subscriber = Subscriber(source, handler, max_attempts=1, backoff_max_s=0.3, **kw)
    nursery.start_soon(subscriber.run)
    with trio.fail_after(30):
        await subscriber.ready.wait()


async def park_replay_and_remove(
    store: DeadLetterStore, publish: Any, handler: Handler, sent: BusMessage, parked: Any = None
) -> None:
    """The scenario both buses share, once two instances are subscribed."""
    await publish([sent])

    async def parked_twice() -> bool:
        return len(await store.read(10)) == 2

    await eventually(parked_twice, 20)
    if parked is not None:
        await parked()
    letters = await store.read(10)
    assert {d.instance for d in letters} == {"inst-a", "inst-b"}
    assert len({d.source for d in letters}) == 1  # two copies of one message
    first = letters[0]
    assert first.topic == TOPIC and first.attributes["eventId"] == sent.event_id
    assert first.reason.startswith("handler failed 1 times: RuntimeError: actor down")
    assert msgspec.json.decode(first.data) == {"tenantId": "tnt-a", "sessionId": "s-1"}

    dry = await store.replay([first.id], dry_run=True)
    assert [d.id for d in dry.replayed] == [first.id] and dry.removed == 2
    assert len(await store.read(10)) == 2  # a dry run changes nothing

    handler.fixed = True
    report = await store.replay([first.id])
    assert len(report.replayed) == 1 and report.removed == 2 and report.missing == []
    # published once, received by each instance's own subscription
    await eventually(lambda: handler.handled == [sent.event_id] * 2, 20)

    async def emptied() -> bool:
        return await store.read(10) == []

    await eventually(emptied, 20)
    assert (await store.replay(["no-such-id"])).missing == ["no-such-id"]


async def test_embedded_dead_letters_are_listed_replayed_and_removed(tier: RedisTier) -> None:
    handler = Handler()
    store = RedisDeadLetters(tier)
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        for name in ("inst-a", "inst-b"):
            source = RedisStreamsSource(tier, name, (TOPIC,), block_ms=200, redeliver_ms=50)
            extra: dict[str, Any] = {}
            if name == "inst-a":  # the one that maintains the store and reports its depth
                extra = {"dead_letters": store, "metrics": metrics, "maintain_s": 0.05}
            await subscribe(nursery, source, handler, **extra)
        depth = metrics.bus_dead_letters._value.get

        async def gauged() -> None:
            await eventually(lambda: depth() == 2, 10)

        publish = RedisStreamsPublisher(tier).publish
        await park_replay_and_remove(store, publish, handler, event(), gauged)
        await eventually(lambda: depth() == 0, 10)
        nursery.cancel_scope.cancel()


async def test_embedded_dead_letters_are_kept_seven_days(tier: RedisTier) -> None:
    key = dead_letter_key(tier.prefix)
    now_ms = int(time.time() * 1000)
    eight_days, six_days = now_ms - 8 * 86_400_000, now_ms - 6 * 86_400_000

    async def add(client: Any) -> None:
        for stamp in (eight_days, six_days):
            await client.xadd(key, {"topic": TOPIC, "messageId": str(stamp)}, id=f"{stamp}-0")

    await tier.run(add)
    store = RedisDeadLetters(tier)
    assert await store.maintain() == 1
    [kept] = await store.read(10)
    assert kept.id == f"{six_days}-0" and abs(kept.parked_at - six_days / 1000) < 0.001


async def test_pubsub_dead_letters_are_listed_replayed_and_removed(
    pubsub_emulator: PubSubEmulator,
) -> None:
    project = f"dl-{uuid.uuid4().hex[:8]}"
    host = pubsub_emulator.host
    handler = Handler()
    publisher = PubSubPublisher(project, emulator_host=host, timeout=5, create_topics=True)
    await publisher.open()
    store = PubSubDeadLetters(project, emulator_host=host, timeout=5, create_topics=True)
    await store.open()
    try:
        async with trio.open_nursery() as nursery:
            for name in ("inst-a", "inst-b"):
                source = PubSubSource(
                    project, name, (TOPIC,), emulator_host=host, create_topics=True, timeout=5
                )
                await subscribe(nursery, source, handler)
            await park_replay_and_remove(store, publisher.publish, handler, event())
            nursery.cancel_scope.cancel()
    finally:
        await store.close()
        await publisher.close()

    def subscription() -> Any:
        client = make_subscriber_client(host)
        try:
            path = f"projects/{project}/subscriptions/{DEAD_LETTER_SUBSCRIPTION}"
            return client.get_subscription(subscription=path, timeout=5)
        finally:
            client.close()

    kept = await trio.to_thread.run_sync(subscription)
    assert kept.message_retention_duration.total_seconds() == 7 * 86_400
    assert kept.expiration_policy.ttl.total_seconds() == 0  # never expires


def _cli(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "BFF_BUS": "embedded",
        "PUBSUB_EMULATOR_HOST": "",
        "BFF_REDIS_SESSION_URL": REDIS_URL,
        "BFF_REDIS_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "ops.buscli", "dead-letters", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ops_bus_lists_and_replays_from_the_command_line(redis_prefix: str) -> None:
    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        added: Any = client.xadd(
            dead_letter_key(redis_prefix),
            {
                "topic": TOPIC,
                "messageId": "1-0",
                "reason": "undecodable: oops",
                "instance": "inst-a",
                "attempt": "1",
                "data": b"{oops",
                "attr.subject": REVOKED,
                "attr.eventId": "ev-1",
            },
        )
        entry = added.decode()
        listed = _cli(redis_prefix, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [row] = [msgspec.json.decode(line) for line in listed.stdout.splitlines()]
        assert row["id"] == entry and row["eventId"] == "ev-1" and row["data"] == "{oops"
        table = _cli(redis_prefix, "list")
        assert entry in table.stdout and "undecodable: oops" in table.stdout

        dry = _cli(redis_prefix, "replay", "--all", "--dry-run")
        assert dry.returncode == 0 and "would replay 1 message(s)" in dry.stdout, dry
        assert client.xlen(dead_letter_key(redis_prefix)) == 1

        missing = _cli(redis_prefix, "replay", "--id", "0-1")
        assert missing.returncode == 1 and "not found: 0-1" in missing.stdout

        done = _cli(redis_prefix, "replay", "--id", entry)
        assert done.returncode == 0 and "replayed 1 message(s); removed 1" in done.stdout, done
        assert client.xlen(dead_letter_key(redis_prefix)) == 0
        entries: Any = client.xrange(stream_key(redis_prefix, TOPIC))
        [(_, fields)] = entries
        assert fields[b"eventId"] == b"ev-1" and fields[b"data"] == b"{oops"
    finally:
        client.close()
