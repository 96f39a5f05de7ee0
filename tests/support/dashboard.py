"""In-process dashboard engine wired to the test simulator, real Redis, and (optionally) the
real actor runtime with a PropertyActor that composes through the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.config import ActorConfig
from actors.property import PropertyDeps, property_kind
from actors.system import ActorSystem
from actors.testing import MemoryAlertAcks, MemoryDeviceFeed, MemoryInboxes
from edge.dashboard.engine import DashboardEngine, Timing
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from ledger.appendlog import Ledger
from ledger.database import Database
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for

T, P = "tnt-demo", "prop-demo-1"


@asynccontextmanager
async def running_engine(
    sim: SimHandle, redis_url: str, prefix: str, timing: Timing | None = None, **env: str
) -> AsyncIterator[DashboardEngine]:
    tier = RedisTier("cache", redis_url, prefix, timeout=2.0)
    await tier.open()
    try:
        async with clients_for(sim, **env) as (upstreams, metrics):
            engine = DashboardEngine(upstreams, tier, metrics, timing or Timing())
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run, None)
                yield engine
                nursery.cancel_scope.cancel()
    finally:
        await tier.close()


@asynccontextmanager
async def property_actors(
    db: Database,
    engine: DashboardEngine,
    metrics: Metrics | None = None,
    feed: MemoryDeviceFeed | None = None,
) -> AsyncIterator[tuple[ActorSystem, Ledger]]:
    """An actor system with only the PropertyActor kind, its views behind ``engine``; the
    devices' feeds (``feed``: pass one to see what the devices are sent), the inboxes and the
    alert acknowledgements are in memory."""
    ledger = Ledger(db)
    deps = PropertyDeps(
        log=ledger,
        views=engine,
        feed=feed if feed is not None else MemoryDeviceFeed(),
        inboxes=MemoryInboxes(),
        acks=MemoryAlertAcks(),
    )
    kinds = [property_kind(deps)]
    system = ActorSystem(kinds, ActorConfig(mailbox_size=256), (metrics or Metrics()).actors)
    async with trio.open_nursery() as nursery:
        await nursery.start(ledger.run)
        await nursery.start(system.run)
        yield system, ledger
        nursery.cancel_scope.cancel()


def reads(sim: SimHandle, service: str) -> int:
    """GETs ``service`` received since the simulator was reset (its request counter)."""
    return sum(1 for c in sim.calls(service, kind="all") if c["method"] == "GET")


def by_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in lines if line.get("type") == "widget"}


async def eventually_async(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll the async ``check`` until it holds; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.01)
