"""PropertyActor ``(tenant, propertyId)``: which devices follow a property, and when its composed
views go stale.

Ledger-held state (stream ``property:<propertyId>``): the subscribed devices. Cache-held state,
reloaded on activation: the names of the views composed for this property (dashboards,
workbench boards), which live behind the :class:`~actors.ports.PropertyViews` port. The actor
decides *when* views are invalidated — on command, or when a cache-affecting domain event
arrives — and in which order; the port knows *which* views an event touches and owns their
keys. Cache bookkeeping is not audited, so it is not written to the ledger.

Compositions themselves never pass through the actor: the dashboard engine keeps the
per-process map of running compositions (single-flight), and a dashboard miss costs no mailbox
turn.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from actors.address import PROPERTY as KIND
from actors.address import ActorAddress
from actors.errors import CommandRejected, DependencyUnavailable
from actors.eventsourced import EventSourced, Pending
from actors.kind import ActorKind
from actors.messages import DomainEvent, GetState, Handled, Message
from actors.ports import OUTAGES, EventLog, PropertyViews
from schemas.actor_events import DEVICE_SUBSCRIBED as SUBSCRIBED
from schemas.actor_events import DEVICE_UNSUBSCRIBED as UNSUBSCRIBED
from schemas.actor_events import DeviceSubscription
from schemas.identifiers import Identifier

log = logging.getLogger("bff.actors.property")

# Domain topics whose events make the property's composed views stale (SERVICE_OVERVIEW §6).
CACHE_AFFECTING = (
    "melmastoon.reservation.",
    "melmastoon.housekeeping.",
    "melmastoon.maintenance.",
    "melmastoon.alert.",
    "melmastoon.ai.",
)


# --- messages ------------------------------------------------------------------------------


class SubscribeDevice(Message, frozen=True, tag="subscribeDevice"):
    device_id: Identifier


class UnsubscribeDevice(Message, frozen=True, tag="unsubscribeDevice"):
    device_id: Identifier


class TrackCacheKey(Message, frozen=True, tag="trackCacheKey"):
    """A cache entry was composed for this property under ``name``: remember it."""

    name: Identifier


class InvalidateCache(Message, frozen=True, tag="invalidateCache"):
    """Delete the named cache entries (all tracked ones when ``names`` is absent)."""

    names: list[Identifier] | None = None


PropertyMessage = (
    SubscribeDevice | UnsubscribeDevice | TrackCacheKey | InvalidateCache | GetState | DomainEvent
)


class SubscriptionAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    version: int
    subscribed: bool
    changed: bool


class CacheInvalidated(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    deleted: int
    names: list[str]


# --- events and state ----------------------------------------------------------------------


class PropertyState(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    tenant: str
    property_id: str
    version: int = 0
    subscribed_devices: tuple[str, ...] = ()
    cache_keys: tuple[str, ...] = ()


_subscription = msgspec.json.Decoder(DeviceSubscription)


def apply_property_event(state: PropertyState, subject: str, payload: bytes) -> PropertyState:
    """Pure fold of one ledger event; subjects this version does not know are skipped."""
    if subject in (SUBSCRIBED, UNSUBSCRIBED):
        device = _subscription.decode(payload).device_id
        devices = set(state.subscribed_devices)
        if subject == SUBSCRIBED:
            devices.add(device)
        else:
            devices.discard(device)
        return msgspec.structs.replace(state, subscribed_devices=tuple(sorted(devices)))
    return state


def decide_subscription(state: PropertyState, device_id: str, subscribe: bool) -> list[Pending]:
    if (device_id in state.subscribed_devices) == subscribe:
        return []
    return [
        Pending(SUBSCRIBED if subscribe else UNSUBSCRIBED, DeviceSubscription(device_id=device_id))
    ]


# --- the actor -----------------------------------------------------------------------------


class PropertyActor(EventSourced[PropertyState]):
    def __init__(self, address: ActorAddress, log: EventLog, views: PropertyViews) -> None:
        self._views = views
        super().__init__(address, log)

    def initial_state(self) -> PropertyState:
        return PropertyState(tenant=self.address.tenant, property_id=self.address.id)

    def apply(self, state: PropertyState, subject: str, payload: bytes) -> PropertyState:
        return apply_property_event(state, subject, payload)

    async def load_volatile(self) -> None:
        try:
            names = await self._views.names(self.address.tenant, self.address.id)
        except OUTAGES as exc:  # a cache outage must not stop the property's actor
            log.warning(
                "cache index not loaded", extra={"actor": str(self.address), "error": str(exc)}
            )
            names = []
        self._set_cache_keys(set(names))

    def _set_cache_keys(self, names: set[str]) -> None:
        self.state = msgspec.structs.replace(self.state, cache_keys=tuple(sorted(names)))

    async def handle(self, message: Any) -> Any:
        if isinstance(message, SubscribeDevice | UnsubscribeDevice):
            return await self._subscription(message)
        if isinstance(message, TrackCacheKey):
            return await self._track(message.name)
        if isinstance(message, InvalidateCache):
            return await self._invalidate(message.names)
        if isinstance(message, GetState):
            return self.state
        if isinstance(message, DomainEvent):
            return await self._on_domain_event(message)
        raise CommandRejected(self.address, f"unsupported message {type(message).__name__}")

    async def _on_domain_event(self, event: DomainEvent) -> Handled:
        """Void, hint and delete the views the event makes stale (see ``PropertyViews``). An
        outage raises only when nothing was voided, so the event is redelivered then."""
        if not event.subject.startswith(CACHE_AFFECTING):
            return Handled(acted=False)
        tenant, pid = self.address.tenant, self.address.id
        try:
            done = await self._views.invalidate(tenant, pid, event.subject, event.event_id)
        except OUTAGES as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc
        if done.deleted:
            self._set_cache_keys(set(self.state.cache_keys) - set(done.deleted))
        return Handled(acted=done.voided or done.hinted or bool(done.deleted))

    async def _subscription(self, message: SubscribeDevice | UnsubscribeDevice) -> SubscriptionAck:
        subscribe = isinstance(message, SubscribeDevice)
        changed = await self.execute(
            lambda state: decide_subscription(state, message.device_id, subscribe),
            device_id=message.device_id,
        )
        return SubscriptionAck(version=self.version, subscribed=subscribe, changed=changed)

    async def _track(self, name: str) -> PropertyState:
        try:
            await self._views.track(self.address.tenant, self.address.id, name)
        except OUTAGES as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc
        self._set_cache_keys({*self.state.cache_keys, name})
        return self.state

    async def _invalidate(self, names: list[str] | None) -> CacheInvalidated:
        tenant, pid = self.address.tenant, self.address.id
        try:
            known = await self._views.names(tenant, pid)
            chosen = sorted(set(known if names is None else names))
            deleted = await self._views.delete(tenant, pid, chosen) if chosen else 0
        except OUTAGES as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc
        self._set_cache_keys(set(known) - set(chosen))
        return CacheInvalidated(deleted=deleted, names=chosen)


def property_kind(log: EventLog, views: PropertyViews) -> ActorKind:
    return ActorKind(
        name=KIND,
        messages=PropertyMessage,
        accepts=(
            SubscribeDevice,
            UnsubscribeDevice,
            TrackCacheKey,
            InvalidateCache,
            GetState,
            DomainEvent,
        ),
        factory=lambda address: PropertyActor(address, log, views),
    )
