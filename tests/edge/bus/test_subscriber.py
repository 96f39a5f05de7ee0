"""The subscriber's contract with the actor layer: strict decoding, dead letters for anything
that cannot be a domain event, the right tenant and ids handed over, ack only after success.

Unit tests drive :meth:`Subscriber.process` with a recording source (the one seam); the routing
test runs the real embedded bus with a recording handler standing in for the actor router."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import msgspec
import pytest
import trio

from actors.ports import InboundEvent
from edge.bus.codec import InvalidEvent, decode_inbound
from edge.bus.port import BusMessage, Delivery
from edge.bus.redis_streams import RedisStreamsPublisher, RedisStreamsSource, dead_letter_key
from edge.bus.subscriber import Subscriber
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from tests.support.waiting import eventually

REVOKED = "melmastoon.iam.session.revoked.v1"


class RecordingSource:
    """Only ``dead_letter`` is used by ``Subscriber.process``."""

    def __init__(self) -> None:
        self.dead: list[tuple[str, str]] = []

    async def run(self, deliveries: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.dead.append((delivery.message_id, reason))

    async def retire(self) -> None:
        pass


def delivery(
    data: bytes = b'{"tenantId":"tnt-a","sessionId":"s1"}',
    topic: str = "melmastoon.iam",
    attempt: int = 1,
    log: list[str] | None = None,
    **attributes: str,
) -> Delivery:
    attrs = {"subject": REVOKED, "eventId": "e-1", **attributes}
    log = log if log is not None else []

    async def ack() -> None:
        log.append("ack")

    async def nack() -> None:
        log.append("nack")

    return Delivery(
        topic=topic,
        data=data,
        attributes=attrs,
        message_id="m-1",
        attempt=attempt,
        ack=ack,
        nack=nack,
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"data": b"not json"}, "data is not a domain event"),
        ({"data": b"[1,2]"}, "data is not a domain event"),
        ({"data": b'{"sessionId":"s1"}'}, "missing required field `tenantId`"),
        ({"data": b'{"tenantId":""}'}, "data is not a domain event"),
        ({"data": b'{"tenantId":"a b"}'}, "data is not a domain event"),
        ({"subject": "melmastoon.iam.Session.v1"}, "malformed subject"),
        ({"subject": ""}, "malformed subject"),
        ({"topic": "melmastoon.alert"}, "does not belong to topic"),
        ({"eventId": ""}, "missing eventId"),
        ({"tenantId": "tnt-b"}, "does not match"),
    ],
)
def test_decode_rejects_what_cannot_be_a_domain_event(change: dict[str, Any], reason: str) -> None:
    kwargs = dict(change)
    with pytest.raises(InvalidEvent, match=reason):
        decode_inbound(delivery(**kwargs))


def test_decode_hands_over_tenant_ids_and_the_raw_data() -> None:
    event = decode_inbound(delivery(tenantId="tnt-a", traceparent="00-abc"))
    assert (event.subject, event.event_id, event.tenant) == (REVOKED, "e-1", "tnt-a")
    assert msgspec.json.decode(event.data) == {"tenantId": "tnt-a", "sessionId": "s1"}
    assert event.attributes == {"traceparent": "00-abc"}


async def test_ack_only_after_the_handler_returned() -> None:
    log: list[str] = []

    async def handler(event: InboundEvent) -> None:
        log.append(f"handled {event.tenant}")

    await Subscriber(RecordingSource(), handler).process(delivery(log=log))
    assert log == ["handled tnt-a", "ack"]


async def test_handler_failure_nacks_then_dead_letters_at_the_last_attempt() -> None:
    source, log = RecordingSource(), list[str]()
    metrics = Metrics()

    async def handler(event: InboundEvent) -> None:
        raise KeyError("no such actor")

    subscriber = Subscriber(source, handler, max_attempts=3, metrics=metrics)
    await subscriber.process(delivery(attempt=2, log=log))
    assert log == ["nack"] and source.dead == []
    await subscriber.process(delivery(attempt=3, log=log))
    assert log == ["nack", "ack"]
    assert source.dead == [("m-1", "handler failed 3 times: KeyError: 'no such actor'")]
    assert metrics.bus_consumed.labels("dead_lettered")._value.get() == 1


async def test_a_handler_that_hangs_is_timed_out_and_redelivered() -> None:
    log: list[str] = []

    async def handler(event: InboundEvent) -> None:
        await trio.sleep_forever()

    await Subscriber(RecordingSource(), handler, handler_timeout=0.05).process(delivery(log=log))
    assert log == ["nack"]


async def test_poison_message_is_dead_lettered_never_handled() -> None:
    source, log, handled = RecordingSource(), list[str](), list[InboundEvent]()

    async def handler(event: InboundEvent) -> None:
        handled.append(event)

    await Subscriber(source, handler).process(delivery(data=b"\x00garbage", log=log))
    assert handled == [] and log == ["ack"]
    assert source.dead and source.dead[0][1].startswith("undecodable: data is not a domain event")


async def test_events_reach_only_their_own_tenants_actor(tier: RedisTier) -> None:
    """A recording router stands in for ``actors.dispatch``: actors are keyed by
    (tenant, device). Same device id in two tenants = two actors; a message whose attribute
    claims another tenant than its data is dead-lettered and reaches no actor."""
    actors: dict[tuple[str, str], list[str]] = defaultdict(list)

    async def route(event: InboundEvent) -> None:
        data = msgspec.json.decode(event.data)
        actors[(event.tenant, data["deviceId"])].append(event.event_id)

    def revoke(tenant: str, device: str, claimed: str | None = None) -> BusMessage:
        body = msgspec.json.encode({"tenantId": tenant, "deviceId": device})
        return BusMessage(
            subject=REVOKED, data=body, event_id=str(uuid.uuid4()), tenant=claimed or tenant
        )

    a1, b1, a2 = revoke("tnt-a", "dev-1"), revoke("tnt-b", "dev-1"), revoke("tnt-a", "dev-2")
    spoofed = revoke("tnt-b", "dev-9", claimed="tnt-a")
    async with trio.open_nursery() as nursery:
        source = RedisStreamsSource(tier, "one", ("melmastoon.iam",), block_ms=100)
        subscriber = Subscriber(source, route)
        nursery.start_soon(subscriber.run)
        with trio.fail_after(5):
            await subscriber.ready.wait()
        await RedisStreamsPublisher(tier).publish([a1, spoofed, b1, a2])
        await eventually(lambda: sum(len(v) for v in actors.values()) == 3, 5)

        async def dead_count(client: Any) -> int:
            return int(await client.xlen(dead_letter_key(tier.prefix)))

        await eventually(lambda: tier.run(dead_count), 5)
        nursery.cancel_scope.cancel()
    assert dict(actors) == {
        ("tnt-a", "dev-1"): [a1.event_id],
        ("tnt-b", "dev-1"): [b1.event_id],
        ("tnt-a", "dev-2"): [a2.event_id],
    }
