"""The subscriber: domain events from the bus, decoded, handed to the actor layer, acked after.

Per delivery: decode with msgspec (:func:`edge.bus.codec.decode_inbound`); a message that cannot
be a domain event is dead-lettered with a log line and acked (retrying cannot fix it). A valid
event goes to the injected :class:`~edge.bus.port.EventHandler` under a deadline; when it
returns, the delivery is acked; when it raises, it is nacked (redelivered), and after
``max_attempts`` deliveries it is dead-lettered instead. Nothing a message contains can stop
the subscriber.

Deliveries are processed one at a time, in the order the adapter hands them over (Pub/Sub
ordering keys / stream order), through a bounded channel: a slow handler backs up into the
broker client instead of into memory. If the broker goes away the adapter is restarted with
backoff; the per-instance subscription is retired only when the subscriber stops for good.
"""

from __future__ import annotations

import logging
import random

import trio

from actors.ports import EventHandler, InboundEvent
from edge.bus.codec import InvalidEvent, decode_inbound
from edge.bus.dead_letters import DeadLetterStore
from edge.bus.port import BusSource, BusUnavailable, Delivery
from edge.metrics import Metrics

log = logging.getLogger("bff.bus.subscriber")


class Subscriber:
    """Runs one :class:`BusSource` and feeds its deliveries to ``handler``."""

    def __init__(
        self,
        source: BusSource,
        handler: EventHandler,
        *,
        metrics: Metrics | None = None,
        max_attempts: int = 5,
        handler_timeout: float = 10.0,
        buffer: int = 64,
        backoff_max_s: float = 10.0,
        retire_timeout: float = 5.0,
        pause_s: float = 1.0,
        dead_letters: DeadLetterStore | None = None,
        maintain_s: float = 60.0,
    ) -> None:
        self._source = source
        self._handler = handler
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._handler_timeout = handler_timeout
        self._buffer = buffer
        self._backoff_max = backoff_max_s
        self._retire_timeout = retire_timeout
        self._pause = pause_s
        self._dead_letters = dead_letters
        self._maintain_s = maintain_s
        self.ready = trio.Event()  # set once the subscription exists (tests wait on it)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled. Starts at once: an unreachable broker does not hold up start-up."""
        task_status.started()
        async with trio.open_nursery() as nursery:
            if self._dead_letters is not None:
                nursery.start_soon(self._maintain_dead_letters, self._dead_letters)
            await self._consume()

    async def _maintain_dead_letters(self, store: DeadLetterStore) -> None:
        """Every ``maintain_s``: the dead letters' retention (F-38, 7 days) and depth gauge."""
        while True:
            try:
                depth = await store.maintain()
            except BusUnavailable as exc:
                log.warning("dead letters not maintained", extra={"error": str(exc)[:300]})
            else:
                if depth is not None and self._metrics is not None:
                    self._metrics.bus_dead_letters.set(depth)
            await trio.sleep(self._maintain_s)

    async def _consume(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self._run_source()
                    failures = 0
                except* Exception as group:  # broker down, or an adapter bug: restart it
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        log.warning(
                            "bus subscriber lost the broker; restarting",
                            extra={"error": repr(group.exceptions[0])[:300]},
                        )
                await trio.sleep(min(self._backoff_max, 0.1 * 2**failures) * random.uniform(0.5, 1))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._retire_timeout):
                try:
                    await self._source.retire()
                except (BusUnavailable, OSError) as exc:
                    log.warning(
                        "could not remove the instance subscription",
                        extra={"error": repr(exc)[:300]},
                    )

    async def _run_source(self) -> None:
        send, recv = trio.open_memory_channel[Delivery](self._buffer)
        async with trio.open_nursery() as nursery, recv:
            await nursery.start(self._source_task, send)
            self.ready.set()
            async for delivery in recv:
                await self.process(delivery)

    async def _source_task(
        self, send: trio.MemorySendChannel[Delivery], *, task_status: trio.TaskStatus[None]
    ) -> None:
        await self._source.run(send, task_status=task_status)

    async def process(self, delivery: Delivery) -> None:
        """Decode, hand over, then ack / nack / dead-letter one delivery."""
        try:
            event = decode_inbound(delivery)
        except InvalidEvent as exc:
            log.warning(
                "dead-lettering an undecodable bus message",
                extra={
                    "topic": delivery.topic,
                    "messageId": delivery.message_id,
                    "reason": str(exc)[:300],
                },
            )
            await self._dead_letter(delivery, f"undecodable: {exc}")
            return
        try:
            with trio.fail_after(self._handler_timeout):
                await self._handler(event)
        except Exception as exc:
            await self._failed(delivery, event, exc)
            return
        await delivery.ack()
        self._count("handled")

    async def _failed(self, delivery: Delivery, event: InboundEvent, exc: Exception) -> None:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        if delivery.attempt >= self._max_attempts:
            log.error(
                "dead-lettering a domain event its handler keeps failing",
                extra={
                    "subject": event.subject,
                    "eventId": event.event_id,
                    "attempts": delivery.attempt,
                    "error": detail,
                },
            )
            await self._dead_letter(delivery, f"handler failed {delivery.attempt} times: {detail}")
            return
        log.warning(
            "domain event handler failed; redelivering",
            extra={
                "subject": event.subject,
                "eventId": event.event_id,
                "attempt": delivery.attempt,
                "error": detail,
            },
        )
        await delivery.nack()
        self._count("redelivered")

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the message, then ack it; if parking fails, nack so it is not lost."""
        try:
            await self._source.dead_letter(delivery, reason)
        except BusUnavailable as exc:
            log.warning(
                "could not dead-letter a message; redelivering",
                extra={"messageId": delivery.message_id, "error": str(exc)[:300]},
            )
            await trio.sleep(self._pause)  # the bus is in trouble: don't spin on redeliveries
            await delivery.nack()
            self._count("redelivered")
            return
        await delivery.ack()
        self._count("dead_lettered")

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.bus_consumed.labels(outcome).inc()
