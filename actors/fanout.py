"""The one in-process fan-out primitive: items published under a key reach every subscriber of
that key in this process, without the publisher ever waiting.

The live SSE streams of this instance subscribe to it, keyed by ``(tenant, deviceId)``: the
stream hub (``edge/sse/hub.py``) publishes on it what the devices' feeds in Redis push to this
instance. Cross-instance delivery is never this primitive's job: the feeds are shared by every
instance, and each instance only hears about the streams it holds.

A subscriber whose bounded buffer is full is a slow consumer. It misses the item, and with
``evict`` it is also unsubscribed (its channel closed, so it learns it fell behind); either way
``on_full`` hears of it, with the key, and the publisher — usually a task pumping the broker —
never slows down.
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

    def __init__(
        self,
        *,
        buffer: int = 64,
        evict: bool = False,
        on_full: Callable[[K], None] | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be >= 1")
        self._buffer = buffer
        self._evict = evict
        self._on_full = on_full
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
                if self._evict:
                    self._discard(key, channel)
                    channel.close()
                if self._on_full is not None:
                    self._on_full(key)
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

    def keys(self) -> list[K]:
        """The keys with at least one subscriber."""
        return list(self._subscribers)

    def _discard(self, key: K, channel: trio.MemorySendChannel[T]) -> None:
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(channel)
            if not subscribers:
                del self._subscribers[key]
