"""The composition root: every long-lived object of one service process, built once, in
dependency order, in this one place.

Order matters and is the point of this module::

    metrics, readiness
    Postgres pool, Redis cache + session tiers         (opened; never waits for them to be up)
    upstream clients, session store
    ledger writer ─ retention ─ outbox relay           (the actors append through the ledger)
    dashboard engine                                    (the PropertyActor's PropertyViews port)
    actor system                                        (DeviceActor, PropertyActor)
    auth chain                                          (opens sessions through the actors)
    admin server
    bus subscriber                                      LAST: every handler exists before the
                                                        first consumed event is dispatched

Nothing is registered later and nothing is optional: a route handler gets a :class:`Services`
whose every field is set. The core (``actors/``, ``ledger/``) sees only the ports it declares;
the adapters behind them are built here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import trio

from actors.address import device
from actors.config import ActorConfig
from actors.device import DeviceDeps, OpenSession, device_kind
from actors.dispatch import DomainEventRouter
from actors.errors import ActorError, SystemNotRunning
from actors.ports import OUTAGES, EventHandler
from actors.property import PropertyDeps, property_kind
from actors.system import ActorSystem
from edge.admin import serve_admin
from edge.audit_completeness import run_audit_completeness
from edge.auth.chain import AuthChain
from edge.auth.floor import VersionFloor
from edge.auth.principal import Principal
from edge.auth.refresh import RefreshThrottle
from edge.auth.sessions import RevokedSessions, SessionStore
from edge.auth.stepup import StepUp
from edge.auth.tenants import TenantStatus
from edge.auth.tokens import KeySet, TokenVerifier
from edge.bus import instance_id as make_instance_id
from edge.bus import open_publisher, open_source
from edge.bus.dead_letters import open_maintained
from edge.bus.relay import Relay
from edge.bus.subscriber import Subscriber
from edge.dashboard.engine import DashboardEngine, Timing
from edge.flags import RuntimeFlags
from edge.idempotency import run_idempotency_cleanup
from edge.inbox.forwarder import run_ack_forwarder
from edge.inbox.projection import RedisInboxes
from edge.metrics import Metrics
from edge.operator_preferences import OperatorPreferencesService
from edge.preferences_cache import PreferencesCache
from edge.process_stats import sample_resident_memory
from edge.readiness import UNAVAILABLE, Probe, ReadinessBoard, ReasonLog
from edge.redis_tier import RedisTier
from edge.settings import Settings, redact_url
from edge.sse.feed import RedisDeviceFeed
from edge.sse.hub import StreamHub, node_id
from edge.sync_cursors import CursorReader, RedisSyncCursors
from edge.upstream.apis import Upstreams
from edge.upstream.factory import build_upstreams, close_upstreams, readiness_probe
from ledger.alert_acks import AlertAckStore
from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.device_status import DeviceStatusStore
from ledger.idempotency import IdempotencyStore
from ledger.preferences import PreferencesMirror
from ledger.retention import run_retention
from schemas.health import DependencyCheck

log = logging.getLogger("bff.assembly")


@dataclass(frozen=True)
class Services:
    """What request handlers reach for: every field is built before the first request."""

    settings: Settings
    metrics: Metrics
    readiness: ReadinessBoard
    db: Database
    cache: RedisTier
    session: RedisTier
    sessions: SessionStore
    upstreams: Upstreams
    ledger: Ledger
    dashboard: DashboardEngine
    actors: ActorSystem
    streams: StreamHub
    inboxes: RedisInboxes
    alert_acks: AlertAckStore
    sync_cursors: CursorReader
    idempotency: IdempotencyStore
    preferences: OperatorPreferencesService
    auth: AuthChain
    refresh_throttle: RefreshThrottle
    instance_id: str


@asynccontextmanager
async def assemble(settings: Settings) -> AsyncIterator[Services]:
    """Build and start everything (inside ``trio_asyncio.open_loop()``); on exit cancel the
    background tasks and close the pools. Never waits for a dependency to be up: readiness
    reports what is down, and liveness is served meanwhile."""
    metrics = Metrics()
    readiness = ReadinessBoard(metrics, settings.dependency_timeout_s)
    async with _stores(settings, readiness) as (db, cache, session):
        upstreams = build_upstreams(settings, metrics)
        readiness.register("upstreamCircuits", readiness_probe(upstreams))
        try:
            async with trio.open_nursery() as nursery:
                services = await _start(
                    nursery, settings, metrics, readiness, db, cache, session, upstreams
                )
                yield services
                nursery.cancel_scope.cancel()
        finally:
            await close_upstreams(upstreams)


async def _start(
    nursery: trio.Nursery,
    settings: Settings,
    metrics: Metrics,
    readiness: ReadinessBoard,
    db: Database,
    cache: RedisTier,
    session: RedisTier,
    upstreams: Upstreams,
) -> Services:
    instance = make_instance_id(settings)
    ledger = await _start_ledger(nursery, settings, metrics, db)
    engine = DashboardEngine(upstreams, cache, metrics, Timing.from_settings(settings))
    await nursery.start(engine.run, ledger)
    sessions = SessionStore(session, RevokedSessions())
    feed = RedisDeviceFeed(
        session,
        sessions.revoked_key,
        history=settings.sse_history,
        ttl_s=settings.sse_history_ttl_s,
        owner_ttl_s=settings.sse_owner_ttl_s,
        opens_per_minute=settings.sse_opens_per_minute,
    )
    inboxes = RedisInboxes(cache, ttl_s=settings.inbox_ttl_s)
    prefs_cache = PreferencesCache(
        cache,
        metrics,
        ttl_s=settings.preferences_cache_ttl_s,
        shortcuts_ttl_s=settings.shortcuts_cache_ttl_s,
    )
    preferences = OperatorPreferencesService(
        upstreams.tenant,
        PreferencesMirror(db),
        prefs_cache,
        ledger,
        metrics,
        fresh_s=settings.preferences_cache_ttl_s,
    )
    alert_acks = AlertAckStore(db)
    device_status = DeviceStatusStore(db)
    cursor_copies = RedisSyncCursors(cache, ttl_s=settings.sync_cursor_ttl_s)
    flags = RuntimeFlags(
        cache,
        refresh_s=settings.version_floor_refresh_s,
        heartbeat_sample_rate=settings.heartbeat_sample_rate,
    )
    await nursery.start(flags.run)
    devices = DeviceDeps(
        log=ledger,
        sessions=sessions,
        cursors=cursor_copies,
        status=device_status,
        feed=feed,
        heartbeat_sample_rate=flags.heartbeat_sample_rate,
    )
    properties = PropertyDeps(log=ledger, views=engine, feed=feed, inboxes=inboxes, acks=alert_acks)
    kinds = [device_kind(devices), property_kind(properties)]
    actors = ActorSystem(kinds, actor_config(settings), metrics.actors)
    await nursery.start(actors.run)
    readiness.register("actors", actors.health)
    auth = _auth_chain(settings, upstreams, sessions, cache, session, metrics, actors, flags)
    streams = StreamHub(
        feed,
        node_id(instance),
        metrics,
        buffer=settings.sse_buffer,
        renew_s=settings.sse_keepalive_s,
        suspended=auth.tenants.suspended,
    )
    await nursery.start(streams.run)
    await nursery.start(
        run_ack_forwarder,
        alert_acks,
        upstreams.notification,
        metrics,
        settings.ack_forward_interval_s,
    )
    idempotency = IdempotencyStore(
        db, ttl_s=settings.idempotency_ttl_s, lease_s=settings.idempotency_lease_s
    )
    await nursery.start(
        run_idempotency_cleanup, idempotency, metrics, settings.idempotency_cleanup_s
    )
    nursery.start_soon(sample_resident_memory, metrics)
    if settings.admin_enabled:
        binds = await nursery.start(serve_admin, actors, settings.admin_port)
        log.info("admin server listening", extra={"binds": binds})
        if settings.mode == "production":
            log.warning("admin server enabled in production mode (BFF_ADMIN=on)")
    if settings.subscriber_enabled:
        router = DomainEventRouter(actors, sessions, shortcut_help=prefs_cache)
        await nursery.start(_run_subscriber, settings, instance, router, metrics)
    return Services(
        settings=settings,
        metrics=metrics,
        readiness=readiness,
        db=db,
        cache=cache,
        session=session,
        sessions=sessions,
        upstreams=upstreams,
        ledger=ledger,
        dashboard=engine,
        actors=actors,
        streams=streams,
        inboxes=inboxes,
        alert_acks=alert_acks,
        sync_cursors=CursorReader(device_status, cursor_copies),
        idempotency=idempotency,
        preferences=preferences,
        auth=auth,
        refresh_throttle=RefreshThrottle(
            session,
            per_device=settings.refresh_limit_per_device,
            per_address=settings.refresh_limit_per_address,
        ),
        instance_id=instance,
    )


# --- stores ---------------------------------------------------------------------------------


@asynccontextmanager
async def _stores(
    settings: Settings, readiness: ReadinessBoard
) -> AsyncIterator[tuple[Database, RedisTier, RedisTier]]:
    timeout = settings.dependency_timeout_s
    db = Database(settings.database_url, max_size=settings.db_pool_max, timeout=max(timeout, 5.0))
    cache = RedisTier("cache", settings.redis_cache_url, settings.redis_prefix, timeout=timeout)
    session = RedisTier(
        "session", settings.redis_session_url, settings.redis_prefix, timeout=timeout
    )
    readiness.register("postgres", _probe("postgres", db.ping, timeout))
    readiness.register("redisSession", _probe("redisSession", session.ping, timeout))
    readiness.register("redisCache", _probe("redisCache", cache.ping, timeout), required=False)
    await db.open()
    await cache.open()
    await session.open()
    try:
        yield db, cache, session
    finally:
        await session.close()
        await cache.close()
        await db.close()


def _probe(name: str, ping: Callable[[float], Awaitable[object]], timeout: float) -> Probe:
    """A readiness probe over ``ping(timeout)``; an outage reads as down. Its reason (the
    driver's message: host, port, user) goes to the log only, the public answer is fixed."""
    reasons = ReasonLog(name)

    async def probe() -> DependencyCheck:
        try:
            await ping(timeout)
        except OUTAGES as exc:
            reasons.failing(redact_url(str(exc))[:500])
            return DependencyCheck(ok=False, detail=UNAVAILABLE)
        reasons.passing()
        return DependencyCheck(ok=True)

    return probe


# --- ledger, relay, subscriber --------------------------------------------------------------


async def _start_ledger(
    nursery: trio.Nursery, settings: Settings, metrics: Metrics, db: Database
) -> Ledger:
    ledger = Ledger(db, metrics=metrics.ledger, max_batch=settings.ledger_max_batch)
    await nursery.start(ledger.run)
    nursery.start_soon(
        lambda: run_retention(
            db,
            older_than=timedelta(days=settings.ledger_retention_days),
            interval_s=settings.ledger_retention_interval_s,
            batch=settings.ledger_retention_batch,
            metrics=metrics.ledger,
        )
    )
    nursery.start_soon(run_audit_completeness, db, metrics)
    if settings.relay_enabled:
        nursery.start_soon(_run_relay, settings, db, ledger, metrics)
    return ledger


async def _run_relay(settings: Settings, db: Database, ledger: Ledger, metrics: Metrics) -> None:
    async with open_publisher(settings) as publisher:
        relay = Relay(
            db,
            publisher,
            ledger=ledger,
            metrics=metrics,
            batch=settings.relay_batch,
            poll_s=settings.relay_poll_s,
            backoff_max_s=settings.relay_backoff_max_s,
            publish_timeout_s=settings.bus_publish_timeout_s * 2,
        )
        await relay.run()


async def _run_subscriber(
    settings: Settings,
    instance: str,
    handler: EventHandler,
    metrics: Metrics,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with open_source(settings, instance) as source, open_maintained(settings) as dead:
        subscriber = Subscriber(
            source,
            handler,
            metrics=metrics,
            max_attempts=settings.subscriber_max_attempts,
            handler_timeout=settings.subscriber_handler_timeout_s,
            dead_letters=dead,
        )
        await subscriber.run(task_status=task_status)


# --- actors and auth ------------------------------------------------------------------------


def actor_config(settings: Settings) -> ActorConfig:
    return ActorConfig(
        mailbox_size=settings.actor_mailbox_size,
        tell_timeout_s=settings.actor_tell_timeout_s,
        ask_timeout_s=settings.actor_ask_timeout_s,
        idle_timeout_s=settings.actor_idle_s,
        restart_min_s=settings.actor_restart_min_s,
        restart_max_s=settings.actor_restart_max_s,
        restart_jitter=settings.actor_restart_jitter,
        max_restarts=settings.actor_max_restarts,
        restart_window_s=settings.actor_restart_window_s,
        failed_hold_s=settings.actor_failed_hold_s,
        max_active=settings.actor_max_active,
    )


def _auth_chain(
    settings: Settings,
    upstreams: Upstreams,
    sessions: SessionStore,
    cache: RedisTier,
    session: RedisTier,
    metrics: Metrics,
    actors: ActorSystem,
    flags: RuntimeFlags,
) -> AuthChain:
    tokens = TokenVerifier(
        KeySet(
            upstreams.iam.jwks,
            ttl_s=settings.jwks_ttl_s,
            min_refetch_s=settings.jwks_min_refetch_s,
        ),
        issuer=settings.iam_issuer,
        audience=settings.iam_audience,
    )
    chain = AuthChain(
        settings,
        tokens,
        sessions,
        TenantStatus(upstreams.tenant, metrics, ttl_s=settings.tenant_status_ttl_s),
        VersionFloor(cache, flags=flags),
        metrics,
        open_session=SessionOpener(actors),
        stepup=StepUp(upstreams.iam, session, metrics, tokens),
    )
    return chain


class SessionOpener:
    """Opens a device's session on its first authenticated call (the auth chain calls this).

    Best effort: a request is never failed because its session could not be recorded yet; the
    next request tries again.
    """

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    async def __call__(self, principal: Principal) -> None:
        command = OpenSession(
            session_id=principal.session_id,
            operator_id=principal.operator_id,
            role=principal.role,
            property_ids=list(principal.property_ids),
            jkt=principal.jkt,
        )
        try:
            await self._system.ask(device(principal.tenant, principal.device_id), command)
        except (ActorError, SystemNotRunning) as exc:
            log.warning(
                "session not recorded yet",
                extra={"sessionId": principal.session_id, "error": str(exc)},
            )
