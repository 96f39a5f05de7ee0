"""Routing consumed domain events to the actors they concern.

The subscriber calls :func:`route_domain_event` and acks only after it returns, so it asks
(waits until each actor handled the event) rather than tells: a crash or timeout raises, and the
event is redelivered. An event routes by its tenant plus ``deviceId`` and/or ``propertyId`` in
its data; an event naming neither, or naming another tenant than it was delivered for, is
irrelevant here and returns without effect.
"""

from __future__ import annotations

import logging

import msgspec

from actors.address import device, property_
from actors.messages import DomainEvent
from actors.ports import InboundEvent, SessionTier
from actors.system import ActorSystem
from schemas.identifiers import Identifier

log = logging.getLogger("bff.actors.dispatch")


class EventRefs(msgspec.Struct, frozen=True, rename="camel"):
    """The routing fields of a domain event's data (other fields are ignored)."""

    tenant_id: str | None = None
    device_id: Identifier | None = None
    property_id: Identifier | None = None
    operator_id: Identifier | None = None


USER_DISABLED = "melmastoon.iam.user.disabled.v1"


_refs = msgspec.json.Decoder(EventRefs)


async def route_domain_event(
    system: ActorSystem,
    event: InboundEvent,
    *,
    sessions: SessionTier | None = None,
    timeout: float | None = None,
) -> None:
    """Deliver ``event`` to its DeviceActor and/or PropertyActor and wait until handled.

    ``iam.user.disabled.v1`` names an operator, not a device: it goes to every device the
    operator has a session on (the session tier's operator index, via ``sessions``).
    """
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
    elif event.subject == USER_DISABLED and refs.operator_id and sessions is not None:
        for device_id in await sessions.devices_of(event.tenant, refs.operator_id):
            targets.append(device(event.tenant, device_id))
    if refs.property_id is not None:
        targets.append(property_(event.tenant, refs.property_id))
    for target in targets:
        await system.ask(target, message, timeout=timeout)


class DomainEventRouter:
    """The bus subscriber's handler (an :data:`~actors.ports.EventHandler`): routes each
    consumed event to its actors and returns once they handled it."""

    def __init__(self, system: ActorSystem, sessions: SessionTier) -> None:
        self._system = system
        self._sessions = sessions

    async def __call__(self, event: InboundEvent) -> None:
        await route_domain_event(self._system, event, sessions=self._sessions)
