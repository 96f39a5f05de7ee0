"""Routing consumed domain events to the actors they concern.

The subscriber calls :func:`route_domain_event` and acks only after it returns, so it asks
(waits until each actor handled the event) rather than tells: a crash or timeout raises, and the
event is redelivered. An event routes by its tenant plus ``deviceId`` and/or ``propertyId`` in
its data; an event naming neither, or naming another tenant than it was delivered for, is
irrelevant here and returns without effect.

iam's revocations (``iam.session.revoked.v1``, ``iam.user.disabled.v1``) route by the sessions
they name, not by a device: see :func:`_route_revocation`. ``theme.published.v1`` concerns a
whole tenant and no actor: it invalidates the tenant's rendered shortcut help directly through
the ``ShortcutHelp`` port.
"""

from __future__ import annotations

import logging

import msgspec

from actors.address import device, property_
from actors.device import REVOCATIONS, USER_DISABLED, CloseSession, Revocation, read_revocation
from actors.messages import DomainEvent
from actors.ports import InboundEvent, SessionTier, ShortcutHelp
from actors.system import ActorSystem
from schemas.identifiers import Identifier
from schemas.preferences import THEME_PUBLISHED, ThemePublished

log = logging.getLogger("bff.actors.dispatch")


class EventRefs(msgspec.Struct, frozen=True, rename="camel"):
    """The routing fields of a domain event's data (other fields are ignored)."""

    tenant_id: str | None = None
    device_id: Identifier | None = None
    property_id: Identifier | None = None


_refs = msgspec.json.Decoder(EventRefs)


async def route_domain_event(
    system: ActorSystem,
    event: InboundEvent,
    *,
    sessions: SessionTier | None = None,
    timeout: float | None = None,
    shortcut_help: ShortcutHelp | None = None,
) -> None:
    """Deliver ``event`` to its DeviceActor and/or PropertyActor and wait until handled.

    Revocations need ``sessions`` (the session tier), which they write before any actor hears
    of them.
    """
    if event.subject in REVOCATIONS:
        if sessions is None:
            raise ValueError(f"{event.subject} is routed through the session tier")
        await _route_revocation(system, event, sessions, timeout)
        return
    if event.subject == THEME_PUBLISHED:
        await _route_theme(event, shortcut_help)
        return
    try:
        refs = _refs.decode(event.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        log.warning(
            "domain event not routable", extra={"eventId": event.event_id, "error": str(exc)}
        )
        return
    if refs.tenant_id is not None and refs.tenant_id != event.tenant:
        log.warning(
            "domain event tenant mismatch; ignored",
            extra={"eventId": event.event_id, "subject": event.subject},
        )
        return
    message = DomainEvent(subject=event.subject, event_id=event.event_id, data=event.data)
    targets = []
    if refs.device_id is not None:
        targets.append(device(event.tenant, refs.device_id))
    if refs.property_id is not None:
        targets.append(property_(event.tenant, refs.property_id))
    for target in targets:
        await system.ask(target, message, timeout=timeout)


async def _route_revocation(
    system: ActorSystem, event: InboundEvent, sessions: SessionTier, timeout: float | None
) -> None:
    """Revoke exactly the sessions the event names, then tell the devices.

    1. Each named ``(tenant, sessionId)`` is marked revoked in the session tier first — every
       instance's auth chain rejects it from then on, whatever happens next — and the tier
       answers which device holds it (``SessionTier.revoke``).
    2. That device is asked to close it (``CloseSession``: ``session.closed.v1`` in its stream,
       the force-logout on its streams).
    3. The devices the event names when the tier did not know the holder and, for
       ``user.disabled``, the operator's devices (the session tier's index) get the event:
       each closes its current session only if the event names it or it is the disabled
       operator's — never another operator's session on a shared device.

    Fields are read one by one (:func:`~actors.device.read_revocation`): a malformed
    ``deviceId`` (or any other hint) never stops the revocation; a missing or malformed session
    id is the one thing that cannot be revoked — logged and counted, and the event is acked.
    """
    revocation = read_revocation(event.subject, event.tenant, event.data)
    if revocation is None:  # not a revocation subject
        return
    if revocation.foreign:
        log.warning(
            "domain event tenant mismatch; ignored",
            extra={"eventId": event.event_id, "subject": event.subject},
        )
        return
    _count_dropped(system, event, revocation)
    if event.subject != USER_DISABLED and not revocation.session_ids:
        return
    holders: dict[str, str] = {}
    for sid in revocation.session_ids:
        holder = await sessions.revoke(event.tenant, sid)
        if holder is not None:
            holders[sid] = holder
    recipients: list[str] = []
    if event.subject == USER_DISABLED:
        if revocation.disabled_operator is not None:
            operator = revocation.disabled_operator
            recipients += await sessions.devices_of(event.tenant, operator)
        recipients += revocation.device_ids
    elif not holders:
        recipients += revocation.device_ids
    for sid, holder in holders.items():
        close = CloseSession(session_id=sid, reason=revocation.reason)
        await system.ask(device(event.tenant, holder), close, timeout=timeout)
    message = DomainEvent(subject=event.subject, event_id=event.event_id, data=event.data)
    for device_id in dict.fromkeys(recipients):
        await system.ask(device(event.tenant, device_id), message, timeout=timeout)
    if revocation.property_id is not None:
        await system.ask(property_(event.tenant, revocation.property_id), message, timeout=timeout)


async def _route_theme(event: InboundEvent, shortcut_help: ShortcutHelp | None) -> None:
    """A tenant published a theme: the shortcut help rendered for its operators is stale.
    Raises (redelivery) only when the invalidation could not be recorded."""
    try:
        theme = msgspec.json.decode(event.data, type=ThemePublished)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        log.warning("theme event unreadable", extra={"eventId": event.event_id, "error": str(exc)})
        return
    if theme.tenant_id != event.tenant:
        log.warning(
            "domain event tenant mismatch; ignored",
            extra={"eventId": event.event_id, "subject": event.subject},
        )
        return
    if shortcut_help is not None:
        await shortcut_help.invalidate_tenant(event.tenant)


def _count_dropped(system: ActorSystem, event: InboundEvent, revocation: Revocation) -> None:
    """Log and count the session ids a revocation could not revoke (missing or malformed)."""
    missing = 1 if event.subject != USER_DISABLED and not revocation.session_ids else 0
    dropped = max(revocation.malformed, missing)
    if not dropped:
        return
    log.error(
        "revocation names a missing or malformed session id: that one is not revoked",
        extra={"eventId": event.event_id, "subject": event.subject, "dropped": dropped},
    )
    system.metrics.revocations_dropped.labels(event.subject).inc(dropped)


class DomainEventRouter:
    """The bus subscriber's handler (an :data:`~actors.ports.EventHandler`): routes each
    consumed event to its actors and returns once they handled it."""

    def __init__(
        self,
        system: ActorSystem,
        sessions: SessionTier,
        shortcut_help: ShortcutHelp | None = None,
    ) -> None:
        self._system = system
        self._sessions = sessions
        self._shortcut_help = shortcut_help

    async def __call__(self, event: InboundEvent) -> None:
        await route_domain_event(
            self._system, event, sessions=self._sessions, shortcut_help=self._shortcut_help
        )
