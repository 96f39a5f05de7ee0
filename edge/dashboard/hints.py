"""In-process delivery of ``dashboard.hint`` to whoever streams to the desktop (SSE, issue #7).

Every instance consumes every domain event on its own subscription, so each instance's
PropertyActor produces the hint for the devices connected to that instance: delivery is local,
not through Redis. Publishing never waits: a subscriber whose buffer is full misses the hint
(counted), because a hint only says "refresh soon" and the next one supersedes it.

SSE side::

    with services.dashboard.hints.subscribe(principal.tenant, property_id) as hints:
        async for hint in hints:        # DashboardHint
            ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

from edge.metrics import Metrics
from schemas.dashboard import DashboardHint

Topic = tuple[str, str]  # (tenant, property id)


class HintBroadcaster:
    def __init__(self, metrics: Metrics, *, buffer: int = 16) -> None:
        self._metrics = metrics
        self._buffer = buffer
        self._subscribers: dict[Topic, set[trio.MemorySendChannel[DashboardHint]]] = {}

    @contextmanager
    def subscribe(
        self, tenant: str, property_id: str
    ) -> Iterator[trio.MemoryReceiveChannel[DashboardHint]]:
        """Hints for one property of one tenant while the ``with`` block lasts."""
        send, receive = trio.open_memory_channel[DashboardHint](self._buffer)
        topic = (tenant, property_id)
        self._subscribers.setdefault(topic, set()).add(send)
        try:
            yield receive
        finally:
            subscribers = self._subscribers.get(topic, set())
            subscribers.discard(send)
            if not subscribers:
                self._subscribers.pop(topic, None)
            send.close()
            receive.close()

    def publish(self, tenant: str, hint: DashboardHint) -> int:
        """Hand ``hint`` to every subscriber of its (tenant, property); returns how many got it."""
        delivered = 0
        for send in list(self._subscribers.get((tenant, hint.property_id), ())):
            try:
                send.send_nowait(hint)
                delivered += 1
            except trio.WouldBlock:
                self._metrics.dashboard_hints.labels("dropped").inc()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.get((tenant, hint.property_id), set()).discard(send)
        self._metrics.dashboard_hints.labels("delivered").inc(delivered)
        return delivered

    def subscribers(self, tenant: str, property_id: str) -> int:
        return len(self._subscribers.get((tenant, property_id), ()))
