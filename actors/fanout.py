"""The one in-process fan-out primitive: items published under a key reach every subscriber of
that key in this process, without the publisher ever waiting.

Device notices (force-logout, AI suggestions, alerts: keyed by tenant and device) and dashboard
hints (keyed by tenant and property) both travel on it, to whatever streams to the desktop on
this instance. Cross-instance delivery is the bus's job, never this one's: every instance
consumes every domain event, so the instance holding a device's stream finds it here.

A subscriber whose bounded buffer is full misses the item (``on_drop`` counts it) rather than
slowing the publisher, who is usually an actor in the middle of its turn.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import trio

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Fanout(Generic[K, T]):
    """Subscribers per key; ``publish`` hands an item to each one's bounded buffer."""

    def __init__(self, *, buffer: int = 64, on_drop: Callable[[], None] | None = None) -> None:
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        self._buffer = buffer
        self._on_drop = on_drop
        self._subscribers: dict[K, set[trio.MemorySendChannel[T]]] = {}
        self.dropped = 0

    def publish(self, key: K, item: T) -> int:
        """Deliver to every current subscriber of ``key``; returns how many got it."""
        delivered = 0
        for channel in list(self._subscribers.get(key, ())):
            try:
                channel.send_nowait(item)
                delivered += 1
            except trio.WouldBlock:
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._discard(key, channel)
        return delivered

    @contextmanager
    def subscribe(self, key: K) -> Iterator[trio.MemoryReceiveChannel[T]]:
        """Items published under ``key`` while the ``with`` block lasts."""
        send, receive = trio.open_memory_channel[T](self._buffer)
        self._subscribers.setdefault(key, set()).add(send)
        try:
            yield receive
        finally:
            self._discard(key, send)
            send.close()
            receive.close()

    def subscribers(self, key: K) -> int:
        return len(self._subscribers.get(key, ()))

    def _discard(self, key: K, channel: trio.MemorySendChannel[T]) -> None:
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(channel)
            if not subscribers:
                del self._subscribers[key]
