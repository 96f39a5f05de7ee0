"""The long-lived resources of one service process, opened and closed in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.notices import NoticeHub
from edge.auth.wiring import build_auth_chain
from edge.metrics import Metrics
from edge.readiness import Probe, ReadinessBoard
from edge.redis_tier import RedisTier, TierUnavailable
from edge.settings import Settings
from edge.upstream.wiring import build_upstreams, close_upstreams, readiness_probe
from ledger.database import Database, DatabaseUnavailable
from schemas.health import DependencyCheck

if TYPE_CHECKING:
    from actors.system import ActorSystem
    from edge.auth.chain import AuthChain
    from edge.bus.port import EventHandler
    from edge.dashboard.engine import DashboardEngine
    from edge.upstream.apis import Upstreams
    from ledger.appendlog import Ledger

log = logging.getLogger("bff.services")


@dataclass
class Services:
    """What request handlers and actors reach for. Built by :func:`open_services`."""

    settings: Settings
    db: Database
    cache: RedisTier
    session: RedisTier
    metrics: Metrics
    readiness: ReadinessBoard
    actors: ActorSystem | None = None  # set by actors.runtime when the system starts
    ledger: Ledger | None = None  # set by edge.bus.wiring (group-commit writer running)
    instance_id: str = ""  # BFF_INSTANCE_ID or generated; names this instance's subscription
    domain_events: EventHandler | None = None  # the actor layer's handler for consumed events
    upstreams: Upstreams | None = None  # the 14 upstream clients (edge/upstream/)
    auth: AuthChain | None = None  # the auth chain of /bff/backoffice/v1/* (edge/auth/)
    notices: NoticeHub = field(default_factory=NoticeHub)  # device notices → this process's streams
    dashboard: DashboardEngine | None = None  # compositions, caches, hints (edge/dashboard/)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open pools and clients (must run inside ``trio_asyncio.open_loop()``); close them on exit.

    Opening never waits for a dependency to be up: readiness reports what is down, and the
    process keeps serving liveness meanwhile.
    """
    timeout = settings.dependency_timeout_s
    metrics = Metrics()
    db = Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=max(timeout, 5.0),
    )
    cache = RedisTier("cache", settings.redis_cache_url, settings.redis_prefix, timeout=timeout)
    session = RedisTier(
        "session", settings.redis_session_url, settings.redis_prefix, timeout=timeout
    )
    readiness = ReadinessBoard(metrics, timeout)
    services = Services(settings, db, cache, session, metrics, readiness)
    readiness.register("postgres", _db_probe(db, timeout))
    readiness.register("redisSession", _redis_probe(session, timeout))
    readiness.register("redisCache", _redis_probe(cache, timeout), required=False)
    services.upstreams = build_upstreams(settings, metrics)
    readiness.register("upstreamCircuits", readiness_probe(services.upstreams))
    services.auth = build_auth_chain(settings, services.upstreams, session, cache, metrics)
    await db.open()
    await cache.open()
    await session.open()
    try:
        yield services
    finally:
        await close_upstreams(services.upstreams)
        await session.close()
        await cache.close()
        await db.close()


def _db_probe(db: Database, timeout: float) -> Probe:
    async def probe() -> DependencyCheck:
        try:
            await db.ping(timeout)
        except DatabaseUnavailable as exc:
            return DependencyCheck(ok=False, detail=str(exc)[:200])
        return DependencyCheck(ok=True)

    return probe


def _redis_probe(tier: RedisTier, timeout: float) -> Probe:
    async def probe() -> DependencyCheck:
        try:
            await tier.ping(timeout)
        except TierUnavailable as exc:
            return DependencyCheck(ok=False, detail=str(exc)[:200])
        return DependencyCheck(ok=True)

    return probe
