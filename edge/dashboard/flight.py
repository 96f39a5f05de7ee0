"""A flight: one composition (or cache replay) that any number of requests follow.

The composition task appends items as they become ready; each follower reads them from its own
cursor and sleeps until the next append, so a late joiner first gets everything already produced
and then the rest live. Nothing is ever dropped or duplicated per follower, and a follower that
goes away (client disconnect) costs the flight nothing: the flight belongs to the engine's
nursery, not to any request.
"""

from __future__ import annotations

import time
from typing import Generic, Literal, TypeVar

import trio

T = TypeVar("T")
Origin = Literal["composed", "cache", "peer"]


class Flight(Generic[T]):
    """Items produced so far, whether more will come, and how it ended."""

    def __init__(self, name: str, *, origin: Origin = "composed") -> None:
        self.name = name
        self.origin: Origin = origin
        self.items: list[T] = []
        self.partial = False
        self.error: Exception | None = None
        self.finished = False
        self.superseded = False  # a domain event made it stale: serve, but never cache it
        self.started_at = trio.current_time()
        self.finished_at: float | None = None
        self.generated_at: float | None = None  # wall clock (epoch s) the content was composed
        self._changed = trio.Event()

    @classmethod
    def done(
        cls, name: str, items: list[T], *, partial: bool, origin: Origin, generated_at: float
    ) -> Flight[T]:
        """A flight that is already over (a cache hit): followers get everything at once."""
        flight: Flight[T] = cls(name, origin=origin)
        flight.items = items
        flight.finish(partial=partial, generated_at=generated_at)
        return flight

    def add(self, item: T) -> None:
        if self.finished:
            raise RuntimeError(f"flight {self.name} already finished")
        self.items.append(item)
        self._wake()

    def finish(
        self, *, partial: bool, error: Exception | None = None, generated_at: float | None = None
    ) -> None:
        """Idempotent: the first call decides the outcome."""
        if self.finished:
            return
        self.generated_at = time.time() if generated_at is None else generated_at
        self.partial = partial
        self.error = error
        self.finished = True
        self.finished_at = trio.current_time()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def next_items(self, cursor: int) -> list[T]:
        """Items from ``cursor`` on, waiting until there is at least one; ``[]`` means the
        flight finished and the caller has seen everything."""
        while cursor >= len(self.items) and not self.finished:
            await self._changed.wait()
        return self.items[cursor:]

    async def wait(self) -> None:
        while not self.finished:
            await self._changed.wait()
