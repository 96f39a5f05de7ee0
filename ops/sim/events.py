"""Domain events the simulated services emit on state changes, and ``POST /_sim/events``.

:class:`EventSink` records every event (``GET /_sim/events``) and hands it to a background task
that publishes it through the BFF's ``Publisher`` port (``edge/bus/port.py``), retrying with
backoff while the broker is down. Emitting never blocks a request: a full queue is recorded as
a dropped publish and logged.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from datetime import datetime
from typing import Any

import msgspec
import trio

from edge.bus.port import BusMessage, BusUnavailable, Publisher
from ops.sim.world import utc_now

log = logging.getLogger("sim.events")
MAX_RECORDED = 10_000
QUEUE = 10_000
PUBLISH_TIMEOUT_S = 10.0


class EmittedEvent(msgspec.Struct, rename="camel", kw_only=True):
    event_id: str
    subject: str
    tenant: str
    data: dict[str, Any]
    emitted_at: datetime
    publish: str = "pending"  # "pending" | "published" | "recorded" (no bus) | "dropped"


class EventSink:
    def __init__(self, publisher: Publisher | None) -> None:
        self._publisher = publisher
        self._recorded: deque[EmittedEvent] = deque(maxlen=MAX_RECORDED)
        self._send, self._receive = trio.open_memory_channel[tuple[EmittedEvent, BusMessage]](QUEUE)

    @property
    def connected(self) -> bool:
        return self._publisher is not None

    def emit(self, subject: str, data: dict[str, Any]) -> EmittedEvent:
        tenant = data.get("tenantId")
        if not isinstance(tenant, str) or not tenant:
            raise ValueError("data.tenantId: every domain event names its tenant")
        event = EmittedEvent(
            event_id=str(uuid.uuid4()),
            subject=subject,
            tenant=tenant,
            data=data,
            emitted_at=utc_now(),
        )
        self._recorded.append(event)
        if self._publisher is None:
            event.publish = "recorded"
            return event
        ordering = str(data.get("propertyId") or data.get("sessionId") or tenant)
        message = BusMessage(
            subject=subject,
            data=msgspec.json.encode(data),
            event_id=event.event_id,
            tenant=tenant,
            ordering_key=f"{tenant}:{ordering}",
        )
        try:
            self._send.send_nowait((event, message))
        except trio.WouldBlock:
            event.publish = "dropped"
            log.error("event queue full; dropped", extra={"subject": subject})
        return event

    def recorded(self, subject_prefix: str = "", tenant: str = "") -> list[EmittedEvent]:
        return [
            e
            for e in self._recorded
            if e.subject.startswith(subject_prefix) and (not tenant or e.tenant == tenant)
        ]

    def clear(self) -> None:
        self._recorded.clear()

    async def run(self) -> None:
        """Publish queued events in order, one at a time; wait out broker outages."""
        if self._publisher is None:
            return
        async for event, message in self._receive:
            await self._publish(event, message)

    async def _publish(self, event: EmittedEvent, message: BusMessage) -> None:
        assert self._publisher is not None
        delay = 0.1
        while True:
            try:
                with trio.fail_after(PUBLISH_TIMEOUT_S):
                    await self._publisher.publish([message])
            except (BusUnavailable, trio.TooSlowError) as exc:
                log.warning(
                    "publish failed; retrying",
                    extra={"subject": event.subject, "error": str(exc)[:200]},
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            event.publish = "published"
            return
