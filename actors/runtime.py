"""Starting the actor runtime inside the service process (called from ``edge/system.py``).

Starts the actor system in the subsystems' nursery, publishes it as ``services.actors`` and
its domain-event router as ``services.domain_events`` (the bus subscriber calls it), registers
the ``actors`` readiness probe (not ready while any supervisor has given up), and, when
``BFF_ADMIN_PORT`` is not 0, the admin server on 127.0.0.1.
"""

from __future__ import annotations

import logging

import trio

from actors.admin import serve_admin
from actors.config import ActorConfig
from actors.device import OpenSession
from actors.dispatch import route_domain_event
from actors.errors import ActorError, SystemNotRunning
from actors.kinds import device, standard_kinds
from actors.ports import EventLog
from actors.system import ActorSystem
from edge.auth.principal import Principal
from edge.auth.sessions import SessionStore
from edge.bus.port import InboundEvent
from edge.readiness import Probe
from edge.redis_tier import TierUnavailable
from edge.services import Services
from schemas.health import DependencyCheck

log = logging.getLogger("bff.actors")


async def start_actor_runtime(nursery: trio.Nursery, services: Services) -> ActorSystem:
    """Start actors (and the admin server) in ``nursery``; returns once they accept work."""
    event_log = await _event_log(nursery, services)
    config = ActorConfig.from_settings(services.settings)
    kinds = standard_kinds(
        event_log,
        services.cache,
        services.session,
        db=services.db,
        notices=services.notices,
        heartbeat_sample_rate=services.settings.heartbeat_sample_rate,
        compositions=services.dashboard,  # edge/dashboard: single-flight compositions
    )
    system = ActorSystem(kinds, config, services.metrics)
    await nursery.start(system.run)
    services.actors = system
    sessions = SessionStore(services.session)
    services.domain_events = DomainEventRouter(system, sessions)
    if services.auth is not None:
        services.auth.open_session = SessionOpener(system)
    services.readiness.register("actors", actors_probe(system))
    port = services.settings.admin_port
    if port:
        binds = await nursery.start(serve_admin, system, port)
        log.info("admin server listening", extra={"binds": binds})
    return system


async def _event_log(nursery: trio.Nursery, services: Services) -> EventLog:
    """The process's shared ledger when the ledger subsystem published one, else our own
    writer (several writers are safe: the ledger serialises batches in Postgres)."""
    if services.ledger is not None:
        return services.ledger
    from ledger.appendlog import Ledger

    ledger = Ledger(services.db, metrics=services.metrics)
    await nursery.start(ledger.run)
    log.info("no shared ledger on Services: the actor runtime runs its own ledger writer")
    return ledger


class DomainEventRouter:
    """The :class:`~edge.bus.port.EventHandler` the subscriber calls for consumed events."""

    def __init__(self, system: ActorSystem, sessions: SessionStore) -> None:
        self._system = system
        self._sessions = sessions

    async def __call__(self, event: InboundEvent) -> None:
        await route_domain_event(self._system, event, sessions=self._sessions)


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
        except (ActorError, SystemNotRunning, TierUnavailable) as exc:
            log.warning(
                "session not recorded yet",
                extra={"sessionId": principal.session_id, "error": str(exc)},
            )


def actors_probe(system: ActorSystem) -> Probe:
    """Not ready while an actor's supervisor has given up (cleared by an admin kill)."""

    async def probe() -> DependencyCheck:
        failed = system.failed()
        if not failed:
            return DependencyCheck(ok=True)
        shown = ", ".join(str(a) for a in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        return DependencyCheck(ok=False, detail=f"supervisor gave up: {shown}{more}")

    return probe
