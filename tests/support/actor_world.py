"""The in-memory ports an actor system runs on in the core's own tests (``actors/testing.py``),
with switches for a Postgres and a Redis outage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from actors.config import ActorConfig
from actors.device import DeviceDeps, device_kind
from actors.kind import ActorKind
from actors.property import PropertyDeps, property_kind
from actors.system import ActorSystem
from actors.testing import (
    MemoryAlertAcks,
    MemoryDeviceFeed,
    MemoryDeviceStatus,
    MemoryEventLog,
    MemoryInboxes,
    MemoryPropertyViews,
    MemorySessionTier,
    MemorySyncCursors,
    Outage,
)


@dataclass
class World:
    """The ports an actor system runs on; ``postgres`` and ``redis`` switch outages (the
    devices' feeds live in the Redis session tier, the inboxes in the cache tier, the alert
    acknowledgements in Postgres). Two actor systems on one world are two instances sharing
    Postgres and Redis."""

    postgres: Outage = field(default_factory=Outage)
    redis: Outage = field(default_factory=Outage)
    ledger: MemoryEventLog = field(init=False)
    sessions: MemorySessionTier = field(init=False)
    cursors: MemorySyncCursors = field(init=False)
    status: MemoryDeviceStatus = field(init=False)
    views: MemoryPropertyViews = field(init=False)
    feed: MemoryDeviceFeed = field(init=False)
    inboxes: MemoryInboxes = field(init=False)
    acks: MemoryAlertAcks = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = MemoryEventLog(self.postgres)
        self.status = MemoryDeviceStatus(self.postgres)
        self.sessions = MemorySessionTier(self.redis)
        self.cursors = MemorySyncCursors(self.redis)
        self.views = MemoryPropertyViews(outage=self.redis)
        self.feed = MemoryDeviceFeed(self.redis)
        self.inboxes = MemoryInboxes(self.redis)
        self.acks = MemoryAlertAcks(self.postgres)

    def kinds(self) -> list[ActorKind]:
        deps = DeviceDeps(
            log=self.ledger,
            sessions=self.sessions,
            cursors=self.cursors,
            status=self.status,
            feed=self.feed,
            heartbeat_sample_rate=1.0,
        )
        property_deps = PropertyDeps(
            log=self.ledger,
            views=self.views,
            feed=self.feed,
            inboxes=self.inboxes,
            acks=self.acks,
        )
        return [device_kind(deps), property_kind(property_deps)]


@asynccontextmanager
async def running_world(
    affects: dict[str, list[str]] | None = None,
) -> AsyncIterator[tuple[ActorSystem, World]]:
    """An actor system on a fresh world (``affects``: which cache names a subject prefix makes
    stale in ``MemoryPropertyViews``), running until the block ends."""
    world = World()
    world.views.affects = affects or {}
    system = ActorSystem(world.kinds(), ActorConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(system.run)
        yield system, world
        nursery.cancel_scope.cancel()
