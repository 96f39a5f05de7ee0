"""The embedded bus: Redis Streams, for when no Pub/Sub (or emulator) is available.

* Publishing: ``XADD <prefix>:_bus:<topic>`` (one stream per topic, approximately capped at
  ``maxlen`` entries), a batch in one pipeline, so entries land in order.
* Receiving: one consumer group per BFF instance (``bff:<instance>``) on every consumed topic's
  stream, created at start from ``$`` (new events only). Every instance therefore gets every
  event (broadcast), and each instance acks its own copy. ``XREADGROUP`` feeds new entries;
  a nacked entry stays pending and is claimed again (``XPENDING`` + ``XCLAIM``, which also gives
  the delivery count) after ``redeliver_ms``; entries left pending by a crashed run of the same
  instance are claimed at start.
* Lifetime of groups: a heartbeat key ``<prefix>:_bus:_instance:<instance>`` with a TTL is kept
  alive while the instance runs; the group is destroyed on clean shutdown, and any instance
  starting up destroys groups whose heartbeat has expired (crashed instances).
* Dead letters go to the stream ``<prefix>:_bus:_dead`` with the reason; kept 7 days and
  replayed by ``./ops/bus dead-letters`` (``edge/bus/redis_dead_letters.py``).

Redelivery after a failed handler can reorder events of this bus (a nacked entry comes back
after later ones); Pub/Sub's ordering keys don't have that caveat.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import redis.exceptions
import trio

from edge.bus.codec import attributes_of
from edge.bus.port import CONSUMED_TOPICS, BusMessage, BusUnavailable, Delivery, topic_for
from edge.redis_tier import RedisTier, TierUnavailable

log = logging.getLogger("bff.bus.redis")

_WIRE_ONLY = frozenset({"data", "orderingKey"})
_FAILURES = (TierUnavailable, redis.exceptions.RedisError)


def stream_key(prefix: str, topic: str) -> str:
    return f"{prefix}:_bus:{topic}"


def dead_letter_key(prefix: str) -> str:
    return f"{prefix}:_bus:_dead"


def _instance_key(prefix: str, instance: str) -> str:
    return f"{prefix}:_bus:_instance:{instance}"


def _op(method: str, *args: Any, **kwargs: Any) -> Callable[[Any], Awaitable[Any]]:
    """``client.<method>(*args, **kwargs)`` as an operation for :meth:`RedisTier.run`."""

    def op(client: Any) -> Awaitable[Any]:
        call: Callable[..., Awaitable[Any]] = getattr(client, method)
        return call(*args, **kwargs)

    return op


async def _call(
    tier: RedisTier, op: Callable[[Any], Awaitable[Any]], timeout: float | None = None
) -> Any:
    """One Redis call; any failure becomes :class:`BusUnavailable`."""
    try:
        return await tier.run(op, timeout)
    except _FAILURES as exc:
        raise BusUnavailable(f"redis bus: {type(exc).__name__}: {exc}") from exc


class RedisStreamsPublisher:
    """``Publisher`` over Redis Streams."""

    def __init__(self, tier: RedisTier, *, maxlen: int = 100_000) -> None:
        self._tier = tier
        self._maxlen = maxlen

    async def publish(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        entries = [
            (stream_key(self._tier.prefix, topic_for(m.subject)), _fields(m)) for m in messages
        ]

        async def op(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for key, fields in entries:
                pipe.xadd(key, fields, maxlen=self._maxlen, approximate=True)
            return await pipe.execute()

        await _call(self._tier, op)


def _fields(message: BusMessage) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes] = {
        k: v for k, v in attributes_of(message).items() if k not in _WIRE_ONLY
    }
    fields["orderingKey"] = message.ordering_key
    fields["data"] = message.data
    return fields


class RedisStreamsSource:
    """``BusSource`` over Redis Streams: one consumer group per instance (see module doc)."""

    def __init__(
        self,
        tier: RedisTier,
        instance: str,
        topics: Sequence[str] = CONSUMED_TOPICS,
        *,
        count: int = 100,
        block_ms: int = 1000,
        redeliver_ms: int = 1000,
        heartbeat_ttl_s: int = 60,
    ) -> None:
        self._tier = tier
        self._instance = instance
        self._group = f"bff:{instance}"
        self._keys = {stream_key(tier.prefix, t): t for t in topics}
        self._count = count
        self._block_ms = max(10, min(block_ms, int(tier.timeout * 500)))
        self._redeliver_ms = redeliver_ms
        self._ttl = heartbeat_ttl_s
        self._nacked: set[tuple[str, bytes]] = set()

    @property
    def group(self) -> str:
        return self._group

    async def run(
        self,
        deliveries: trio.MemorySendChannel[Delivery],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with deliveries, trio.open_nursery() as nursery:
            await self._heartbeat_once()
            await self._reap_stale_groups()
            await self._create_groups()
            nursery.start_soon(self._heartbeat)
            task_status.started()
            await self._redeliver(deliveries, min_idle_ms=0)
            await self._pump(deliveries)

    async def _pump(self, deliveries: trio.MemorySendChannel[Delivery]) -> None:
        streams = {key: ">" for key in self._keys}
        wait = self._block_ms / 1000 + self._tier.timeout
        while True:
            if self._nacked:
                await self._redeliver(deliveries, self._redeliver_ms)
            block = min(self._block_ms, self._redeliver_ms) if self._nacked else self._block_ms

            async def read(client: Any, block: int = block) -> Any:
                return await client.xreadgroup(
                    self._group, self._instance, streams, count=self._count, block=block
                )

            try:
                batches = await _call(self._tier, read, wait)
            except BusUnavailable as exc:
                if "NOGROUP" in str(exc):  # e.g. the stream was deleted: recreate, go on
                    await self._create_groups()
                    continue
                raise
            for key, entries in batches or []:
                for entry_id, fields in entries:
                    await deliveries.send(self._delivery(key.decode(), entry_id, fields, 1))

    async def _redeliver(
        self, deliveries: trio.MemorySendChannel[Delivery], min_idle_ms: int
    ) -> None:
        """Claim this consumer's pending entries idle for ``min_idle_ms`` and deliver them again."""
        for key in self._keys:
            pending = _op(
                "xpending_range",
                key,
                self._group,
                min="-",
                max="+",
                count=self._count,
                consumername=self._instance,
                idle=min_idle_ms,
            )
            rows = await _call(self._tier, pending)
            if not rows:
                continue
            counts = {row["message_id"]: int(row["times_delivered"]) for row in rows}

            claim = _op("xclaim", key, self._group, self._instance, min_idle_ms, list(counts))
            for entry_id, fields in await _call(self._tier, claim):
                self._nacked.discard((key, entry_id))
                if fields:
                    attempt = counts.get(entry_id, 0) + 1
                    await deliveries.send(self._delivery(key, entry_id, fields, attempt))

    def _delivery(
        self, key: str, entry_id: bytes, fields: dict[bytes, bytes], attempt: int
    ) -> Delivery:
        decoded = {k.decode(): v for k, v in fields.items()}
        data = decoded.pop("data", b"")
        decoded.pop("orderingKey", None)
        attributes = {k: v.decode(errors="replace") for k, v in decoded.items()}

        async def ack() -> None:
            self._nacked.discard((key, entry_id))
            await _call(self._tier, _op("xack", key, self._group, entry_id))

        async def nack() -> None:
            self._nacked.add((key, entry_id))

        return Delivery(
            topic=self._keys[key],
            data=data,
            attributes=attributes,
            message_id=entry_id.decode(),
            attempt=attempt,
            ack=ack,
            nack=nack,
        )

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        fields: dict[str, str | bytes] = {
            "topic": delivery.topic,
            "messageId": delivery.message_id,
            "reason": reason[:500],
            "instance": self._instance,
            "attempt": str(delivery.attempt),
            "data": delivery.data,
            **{f"attr.{k}": v for k, v in delivery.attributes.items()},
        }
        key = dead_letter_key(self._tier.prefix)
        await _call(self._tier, _op("xadd", key, fields, maxlen=10_000, approximate=True))

    async def retire(self) -> None:
        for key in self._keys:
            await _call(self._tier, _op("xgroup_destroy", key, self._group))
        instance_key = _instance_key(self._tier.prefix, self._instance)
        await _call(self._tier, _op("delete", instance_key))

    async def _create_groups(self) -> None:
        for key in self._keys:

            async def create(client: Any, key: str = key) -> None:
                try:
                    await client.xgroup_create(key, self._group, id="$", mkstream=True)
                except redis.exceptions.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

            await _call(self._tier, create)

    async def _heartbeat_once(self) -> None:
        key = _instance_key(self._tier.prefix, self._instance)
        await _call(self._tier, _op("set", key, b"1", ex=self._ttl))

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(self._ttl / 3)
            await self._heartbeat_once()

    async def _reap_stale_groups(self) -> None:
        """Destroy consumer groups of instances whose heartbeat expired (they crashed)."""
        for key in self._keys:
            groups = await _call(self._tier, partial(_groups, key=key))
            for name in groups:
                if not name.startswith("bff:") or name == self._group:
                    continue
                alive_key = _instance_key(self._tier.prefix, name[4:])
                if not await _call(self._tier, _op("exists", alive_key)):
                    log.info("removing consumer group of a gone instance", extra={"group": name})
                    await _call(self._tier, _op("xgroup_destroy", key, name))


async def _groups(client: Any, *, key: str) -> list[str]:
    try:
        info = await client.xinfo_groups(key)
    except redis.exceptions.ResponseError:  # no such stream yet
        return []
    return [g["name"].decode() if isinstance(g["name"], bytes) else g["name"] for g in info]
