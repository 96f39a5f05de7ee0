"""Per-process fan-out of device notices (force-logout now; AI, alerts and dashboard hints with
the SSE stream) from the actors that produce them to the streams of this process that serve the
device. Cross-instance delivery is the bus's job: every instance receives every domain event, and
the instance holding a device's stream is the one whose subscriber finds it here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import trio


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One event for a device's SSE stream: ``event`` name and its JSON ``data``."""

    event: str  # "session", "alert", "ai.suggestion", "dashboard.hint", …
    data: dict[str, Any]


class NoticeHub:
    """Subscribers per (tenant, device); a slow subscriber loses notices rather than block."""

    def __init__(self, buffer: int = 64) -> None:
        self._buffer = buffer
        self._subscribers: dict[tuple[str, str], set[trio.MemorySendChannel[Notice]]] = {}
        self.dropped = 0

    def publish(self, tenant: str, device_id: str, notice: Notice) -> int:
        """Deliver to every current subscriber of the device; returns how many got it."""
        delivered = 0
        for channel in list(self._subscribers.get((tenant, device_id), ())):
            try:
                channel.send_nowait(notice)
                delivered += 1
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._discard(tenant, device_id, channel)
        return delivered

    @contextmanager
    def subscribe(self, tenant: str, device_id: str) -> Iterator[trio.MemoryReceiveChannel[Notice]]:
        send, receive = trio.open_memory_channel[Notice](self._buffer)
        self._subscribers.setdefault((tenant, device_id), set()).add(send)
        try:
            yield receive
        finally:
            self._discard(tenant, device_id, send)
            send.close()
            receive.close()

    def _discard(
        self, tenant: str, device_id: str, channel: trio.MemorySendChannel[Notice]
    ) -> None:
        subscribers = self._subscribers.get((tenant, device_id))
        if subscribers is not None:
            subscribers.discard(channel)
            if not subscribers:
                del self._subscribers[(tenant, device_id)]
