"""The long-lived resources of one service process, opened and closed in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from edge.metrics import Metrics
from edge.readiness import Probe, ReadinessBoard
from edge.redis_tier import RedisTier, TierUnavailable
from edge.settings import Settings
from ledger.postgres import Database, DatabaseUnavailable
from schemas.health import DependencyCheck

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
    await db.open()
    await cache.open()
    await session.open()
    try:
        yield services
    finally:
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
