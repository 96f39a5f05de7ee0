"""PropertyActor ``(tenant, propertyId)``: which devices follow a property, and its cache keys.

Ledger-held state (stream ``property:<propertyId>``): the subscribed devices. Redis-held state,
reloaded on activation: the index of cache entries composed for this property (dashboard,
workbench views), which the actor invalidates on command or when a relevant domain event
arrives. Cache bookkeeping is not audited, so it is not written to the ledger.

Dashboard and workbench compositions (``edge/dashboard``) are single-flight per cache name
through this actor: ``ComposeDashboard`` / ``ComposeView`` return the flight already running for
that name, or start one in the dashboard engine's nursery (the actor's turn never waits for
upstreams). A cache-affecting domain event supersedes the running flights it makes stale,
deletes the affected entries, bumps their generations and emits a ``dashboard.hint``.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any, Protocol

import msgspec

from actors.address import ActorAddress
from actors.errors import CommandRejected, DependencyUnavailable
from actors.eventsourced import EventSourced, Pending
from actors.kind import ActorKind
from actors.messages import DomainEvent, GetState, Handled, Identifier, Message
from actors.ports import EventLog
from edge.dashboard.flight import Flight
from edge.dashboard.invalidation import Affected, affected_by, dashboard_name, is_affected
from edge.dashboard.views import ViewSpec
from edge.redis_tier import Client, RedisTier, TierUnavailable, text
from ledger.model import SUBJECT_PREFIX
from schemas.dashboard import Role, WorkbenchView

log = logging.getLogger("bff.actors.property")

KIND = "property"
SUBSCRIBED = SUBJECT_PREFIX + "property.device_subscribed.v1"
UNSUBSCRIBED = SUBJECT_PREFIX + "property.device_unsubscribed.v1"
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


class ComposeDashboard(Message, frozen=True, tag="composeDashboard"):
    """Reply: the flight (``edge.dashboard.flight.Flight``) composing this role's dashboard."""

    role: Role


class ComposeView(Message, frozen=True, tag="composeView"):
    """Reply: the flight building this workbench view (``day`` None: today)."""

    view: WorkbenchView
    day: date | None = None


# Compose* reply with in-process flight objects, so they are not part of the JSON union the
# admin endpoint decodes (an admin caller could not receive the reply).
PropertyMessage = (
    SubscribeDevice | UnsubscribeDevice | TrackCacheKey | InvalidateCache | GetState | DomainEvent
)


class Compositions(Protocol):
    """What the actor needs from the dashboard engine (``edge.dashboard.engine``)."""

    def start_dashboard(self, tenant: str, property_id: str, role: Role) -> Flight[Any]: ...

    def start_view(self, tenant: str, property_id: str, spec: ViewSpec) -> Flight[Any]: ...

    async def invalidated(
        self, tenant: str, property_id: str, affected: Affected, subject: str, event_id: str
    ) -> bool:
        """Bump generations and hint; ``True`` when the generations were bumped."""
        ...

    async def track(self, tenant: str, property_id: str, name: str) -> bool: ...


class SubscriptionAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    version: int
    subscribed: bool
    changed: bool


class CacheInvalidated(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    deleted: int
    names: list[str]


# --- events and state ----------------------------------------------------------------------


class DeviceSubscription(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    device_id: str


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
    def __init__(
        self,
        address: ActorAddress,
        log: EventLog,
        cache: RedisTier,
        compositions: Compositions | None = None,
    ) -> None:
        self._cache = cache
        self._compositions = compositions
        self._flights: dict[str, Flight[Any]] = {}  # cache name → running composition
        super().__init__(address, log)

    def initial_state(self) -> PropertyState:
        return PropertyState(tenant=self.address.tenant, property_id=self.address.id)

    def apply(self, state: PropertyState, subject: str, payload: bytes) -> PropertyState:
        return apply_property_event(state, subject, payload)

    def _key(self, *parts: str) -> str:
        return self._cache.key(self.address.tenant, "property", self.address.id, *parts)

    async def load_volatile(self) -> None:
        index = self._key("cache-index")
        try:
            names: Any = await self._cache.run(lambda r: r.smembers(index))
        except TierUnavailable as exc:  # a cache outage must not stop the property's actor
            log.warning(
                "cache index not loaded", extra={"actor": str(self.address), "error": str(exc)}
            )
            names = set()
        self._set_cache_keys({text(n) for n in names})

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
        if isinstance(message, ComposeDashboard | ComposeView):
            return await self._compose(message)
        if isinstance(message, DomainEvent):
            return await self._on_domain_event(message)
        raise CommandRejected(self.address, f"unsupported message {type(message).__name__}")

    async def _compose(self, message: ComposeDashboard | ComposeView) -> Flight[Any]:
        """Single-flight: the running flight for the name, else a new one (and track its name)."""
        engine = self._compositions
        if engine is None:
            raise CommandRejected(self.address, "dashboards are not enabled in this process")
        tenant, pid = self.address.tenant, self.address.id
        if isinstance(message, ComposeDashboard):
            name = dashboard_name(message.role)
        else:
            spec = ViewSpec(message.view, message.day)
            name = spec.name
        self._flights = {n: f for n, f in self._flights.items() if not f.finished}
        running = self._flights.get(name)
        if running is not None and not running.superseded:
            return running
        try:
            if isinstance(message, ComposeDashboard):
                flight = engine.start_dashboard(tenant, pid, message.role)
            else:
                flight = engine.start_view(tenant, pid, spec)
        except RuntimeError as exc:  # the engine is not running (shutting down): say no
            raise CommandRejected(self.address, str(exc)) from exc
        self._flights[name] = flight
        if name not in self.state.cache_keys and await engine.track(tenant, pid, name):
            # (not tracked when the tier is down: then the entry is not stored either)
            self._set_cache_keys({*self.state.cache_keys, name})
        return flight

    async def _on_domain_event(self, event: DomainEvent) -> Handled:
        """Supersede the running flights the event makes stale, void their cache entries
        (generation bump) and hint the desktops, then delete the tracked entries. With the
        generations bumped a failed delete is harmless (those entries can no longer be read),
        so only without that does a cache-tier failure make the event be redelivered."""
        if not event.subject.startswith(CACHE_AFFECTING):
            return Handled(acted=False)
        affected = affected_by(event.subject)
        for name, flight in self._flights.items():
            if is_affected(name, affected):
                flight.superseded = True  # still served to its followers, never cached
        self._flights = {n: f for n, f in self._flights.items() if not f.superseded}
        voided = False
        if self._compositions is not None and affected:
            voided = await self._compositions.invalidated(
                self.address.tenant, self.address.id, affected, event.subject, event.event_id
            )
        stale = [n for n in self.state.cache_keys if is_affected(n, affected)]
        if stale:
            try:
                await self._invalidate(stale)
            except DependencyUnavailable:
                if not voided:
                    raise
                log.warning("cache entries not deleted (voided)", extra={"names": stale})
        return Handled(acted=bool(stale) or (self._compositions is not None and bool(affected)))

    async def _subscription(self, message: SubscribeDevice | UnsubscribeDevice) -> SubscriptionAck:
        subscribe = isinstance(message, SubscribeDevice)
        changed = await self.execute(
            lambda state: decide_subscription(state, message.device_id, subscribe),
            device_id=message.device_id,
        )
        return SubscriptionAck(version=self.version, subscribed=subscribe, changed=changed)

    async def _track(self, name: str) -> PropertyState:
        index = self._key("cache-index")
        await self._redis(lambda r: r.sadd(index, name))
        self._set_cache_keys({*self.state.cache_keys, name})
        return self.state

    async def _invalidate(self, names: list[str] | None) -> CacheInvalidated:
        chosen = sorted(set(self.state.cache_keys if names is None else names))
        if not chosen:
            return CacheInvalidated(deleted=0, names=[])
        entries = [self._key("cache", n) for n in chosen]
        index = self._key("cache-index")

        async def run(r: Client) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(*entries)
                pipe.srem(index, *chosen)
                deleted, _ = await pipe.execute()
            return int(deleted)

        deleted = await self._redis(run)
        self._set_cache_keys(set(self.state.cache_keys) - set(chosen))
        return CacheInvalidated(deleted=deleted, names=chosen)

    async def _redis(self, op: Any) -> Any:
        try:
            return await self._cache.run(op)
        except TierUnavailable as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc


def property_kind(
    log: EventLog, cache: RedisTier, compositions: Compositions | None = None
) -> ActorKind:
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
            ComposeDashboard,
            ComposeView,
        ),
        factory=lambda address: PropertyActor(address, log, cache, compositions),
    )


def cache_entry_key(cache: RedisTier, tenant: str, property_id: str, name: str) -> str:
    """Where a cache writer stores the entry ``name`` of a property (so invalidation finds it)."""
    return cache.key(tenant, "property", property_id, "cache", name)
