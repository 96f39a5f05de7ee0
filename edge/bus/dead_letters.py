"""The dead-letter store of either bus, as operators and the subscriber see it (FAILURE_MODES
F-38: "DLQ 7 d retention; SRE inspects + replays").

A message the subscriber cannot process is parked with the reason (``BusSource.dead_letter``):
on the embedded bus in the stream ``<prefix>:_bus:_dead``, on Pub/Sub on the topic
``melmastoon.bff.backoffice.deadletter``, read through the one shared subscription
``bff-backoffice.deadletter``. Both keep a dead letter :data:`RETENTION_S` (7 days).

Every instance has its own subscription, so a message that fails everywhere is parked once per
instance: copies share ``(topic, message_id)``, the original message's. A replay publishes the
original message (data and attributes) once to its topic, so every instance receives it again,
and removes it and its copies from the store only after the broker accepted the publish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import msgspec

from edge.settings import Settings

RETENTION_S = 7 * 24 * 3600


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One parked message: ``id`` names it in the store; the rest says what it was and why."""

    id: str
    topic: str  # where it came from (and where a replay publishes it)
    message_id: str  # the original message's id on that topic
    reason: str
    instance: str  # which BFF instance parked it
    attempt: int
    parked_at: float  # epoch seconds
    attributes: dict[str, str]  # the original message's attributes
    data: bytes

    @property
    def source(self) -> tuple[str, str]:
        """What copies parked by different instances share."""
        return (self.topic, self.message_id)


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    replayed: list[DeadLetter]  # one per original message published again
    removed: int  # entries removed from the store (replayed ones and their copies)
    missing: list[str]  # ids asked for that the store does not hold


class DeadLetterStore(Protocol):
    async def read(self, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first; nothing is removed."""
        ...

    async def replay(self, ids: Sequence[str] | None, *, dry_run: bool = False) -> ReplayReport:
        """Publish again the dead letters ``ids`` names (``None``: every one), each original
        message once, then remove them and their copies. ``dry_run``: only say what would be."""
        ...

    async def maintain(self) -> int | None:
        """Apply the retention where the store needs it; the depth, when the store can tell
        it cheaply (``None`` on Pub/Sub: Cloud Monitoring has it)."""
        ...


def pick(letters: Sequence[DeadLetter], ids: Sequence[str] | None) -> ReplayReport:
    """What a replay of ``ids`` does over ``letters``: the first letter of each original
    message named, and how many entries go (``removed`` counts every copy)."""
    wanted = None if ids is None else set(ids)
    chosen = [d for d in letters if wanted is None or d.id in wanted]
    sources = {d.source for d in chosen}
    first: dict[tuple[str, str], DeadLetter] = {}
    for letter in chosen:
        first.setdefault(letter.source, letter)
    found = {d.id for d in letters}
    return ReplayReport(
        replayed=list(first.values()),
        removed=sum(1 for d in letters if d.source in sources),
        missing=sorted((wanted or set()) - found),
    )


def copies(letters: Sequence[DeadLetter], replayed: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Every entry of ``letters`` that is a copy of a message in ``replayed``."""
    sources = {d.source for d in replayed}
    return [d for d in letters if d.source in sources]


@asynccontextmanager
async def open_dead_letters(settings: Settings) -> AsyncIterator[DeadLetterStore]:
    """The configured bus's dead-letter store, opened and closed with the block."""
    if settings.bus_kind == "pubsub":
        from edge.bus.pubsub_dead_letters import PubSubDeadLetters

        store = PubSubDeadLetters(
            settings.pubsub_project,
            emulator_host=settings.pubsub_emulator_host,
            timeout=settings.bus_publish_timeout_s,
            create_topics=settings.mode == "local" or bool(settings.pubsub_emulator_host),
        )
        await store.open()
        try:
            yield store
        finally:
            await store.close()
        return
    from edge.bus import _bus_tier
    from edge.bus.redis_dead_letters import RedisDeadLetters

    tier = _bus_tier(settings)
    await tier.open()
    try:
        yield RedisDeadLetters(tier, maxlen=settings.bus_stream_maxlen)
    finally:
        await tier.close()


@asynccontextmanager
async def open_maintained(settings: Settings) -> AsyncIterator[DeadLetterStore | None]:
    """The store the service itself maintains (retention, depth): the embedded bus's; ``None``
    on Pub/Sub, whose subscription keeps its own retention and Cloud Monitoring its depth."""
    if settings.bus_kind == "pubsub":
        yield None
        return
    async with open_dead_letters(settings) as store:
        yield store
