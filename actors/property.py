"""PropertyActor ``(tenant, propertyId)``: which devices follow a property, and when its composed
views go stale.

Ledger-held state (stream ``property:<propertyId>``): the subscribed devices. Cache-held state,
reloaded on activation: the names of the views composed for this property (dashboards,
workbench boards), which live behind the :class:`~actors.ports.PropertyViews` port. The actor
decides *when* views are invalidated — on command, or when a cache-affecting domain event
arrives — and in which order; the port knows *which* views an event touches and owns their
keys. Cache bookkeeping is not audited, so it is not written to the ledger.

It is also where property-wide stream events start (API contract §6): alerts, AI suggestions
and dashboard hints go to the feeds of the devices following the property
(:mod:`actors.delivery`), and the ``AlertInbox`` / ``AISuggestionInbox`` projections behind the
:class:`~actors.ports.Inboxes` port are kept here, with the acknowledgements (durable in
Postgres and the ledger before notification-service hears of them) and the decisions.

Compositions themselves never pass through the actor: the dashboard engine keeps the
per-process map of running compositions (single-flight), and a dashboard miss costs no mailbox
turn.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from actors.activity import activity_event
from actors.address import PROPERTY as KIND
from actors.address import ActorAddress
from actors.delivery import deliver
from actors.errors import CommandRejected, DependencyUnavailable
from actors.eventsourced import EventSourced, Pending
from actors.kind import ActorKind
from actors.messages import DomainEvent, GetState, Handled, Message
from actors.ports import (
    OUTAGES,
    AlertAck,
    AlertAcks,
    DeviceFeed,
    EventLog,
    Inboxes,
    PropertyViews,
    RecordedAck,
)
from ledger.model import NewEvent
from schemas.actor_events import (
    ALERT_ACKNOWLEDGED,
    SUGGESTION_DECIDED,
    AlertAcknowledged,
    DeviceSubscription,
    SuggestionDecided,
)
from schemas.actor_events import DEVICE_SUBSCRIBED as SUBSCRIBED
from schemas.actor_events import DEVICE_UNSUBSCRIBED as UNSUBSCRIBED
from schemas.identifiers import Identifier
from schemas.inbox import (
    ALERT_RAISED,
    ALERT_RESOLVED,
    SUGGESTION_CREATED,
    SUGGESTION_INVALIDATED,
    AlertRaised,
    AlertResolved,
    Decision,
    SuggestionCreated,
    SuggestionInvalidated,
)
from schemas.sse import FeedItem

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


class AcknowledgeAlert(Message, frozen=True, tag="acknowledgeAlert"):
    """An operator acknowledged an alert: answered with a :class:`~actors.ports.RecordedAck`
    once it is durable (Postgres and the ledger). Idempotent per alert: the first ack stands."""

    alert_id: Identifier
    operator_id: Identifier
    device_id: Identifier


class DecideSuggestion(Message, frozen=True, tag="decideSuggestion"):
    """ai-orchestrator accepted an operator's decision on a suggestion: record it and take the
    suggestion out of every device's inbox."""

    suggestion_id: Identifier
    decision: Decision
    operator_id: Identifier
    device_id: Identifier
    modification: dict[str, Any] | None = None


class MutationApplied(Message, frozen=True, tag="mutationApplied"):
    """A mutation this BFF proxied was applied upstream (its domain event will follow on the
    bus, later): make stale now what ``subject`` would (``melmastoon.reservation.…``), and
    hint the desktops under ``key`` (the attempt id), so the next read shows it. Answered
    with :class:`~actors.messages.Handled`."""

    subject: Annotated[str, msgspec.Meta(pattern=r"^melmastoon\.[a-z0-9_.]+\.v[0-9]+$")]
    key: Identifier


PropertyMessage = (
    SubscribeDevice
    | UnsubscribeDevice
    | TrackCacheKey
    | InvalidateCache
    | AcknowledgeAlert
    | DecideSuggestion
    | MutationApplied
    | GetState
    | DomainEvent
)

INBOX_IDS = uuid.UUID("a9d4c0e2-7b1f-4c3e-8d25-61f0b7e9c4a8")  # namespace of ack/decision rows


class SubscriptionAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    version: int
    subscribed: bool
    changed: bool


class CacheInvalidated(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    deleted: int
    names: list[str]


class SuggestionRecorded(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    suggestion_id: str
    decision: str


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


@dataclass(frozen=True)
class PropertyDeps:
    log: EventLog
    views: PropertyViews
    feed: DeviceFeed
    inboxes: Inboxes
    acks: AlertAcks


_alert_raised = msgspec.json.Decoder(AlertRaised)
_alert_resolved = msgspec.json.Decoder(AlertResolved)
_suggestion_created = msgspec.json.Decoder(SuggestionCreated)
_suggestion_invalidated = msgspec.json.Decoder(SuggestionInvalidated)


class PropertyActor(EventSourced[PropertyState]):
    def __init__(self, address: ActorAddress, deps: PropertyDeps) -> None:
        self._deps = deps
        self._views = deps.views
        super().__init__(address, deps.log)

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
        if isinstance(message, AcknowledgeAlert):
            return await self._guarded(self._acknowledge(message))
        if isinstance(message, DecideSuggestion):
            return await self._guarded(self._decided(message))
        if isinstance(message, MutationApplied):
            return Handled(acted=await self._stale(message.subject, message.key))
        if isinstance(message, GetState):
            return self.state
        if isinstance(message, DomainEvent):
            return await self._on_domain_event(message)
        raise CommandRejected(self.address, f"unsupported message {type(message).__name__}")

    async def _guarded(self, work: Any) -> Any:
        """An outage of a port answers the message with ``DependencyUnavailable``."""
        try:
            return await work
        except OUTAGES as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc

    async def _on_domain_event(self, event: DomainEvent) -> Handled:
        """Keep the inboxes, void/hint/delete the views the event makes stale, and put what
        the desktops should see on the followers' feeds. An outage raises, so the event is
        redelivered (every step is idempotent), except a cache outage after the views were
        voided (see ``PropertyViews``)."""
        acted = await self._guarded(self._inbox_event(event))
        if not event.subject.startswith(CACHE_AFFECTING):
            return Handled(acted=acted)
        return Handled(acted=await self._stale(event.subject, event.event_id) or acted)

    async def _stale(self, subject: str, event_id: str) -> bool:
        """Void, delete and hint the views ``subject`` makes stale (a consumed domain event, or
        a mutation this BFF just proxied: ``event_id`` keys the hint, so each is hinted once);
        whether anything changed."""
        tenant, pid = self.address.tenant, self.address.id
        try:
            done = await self._views.invalidate(tenant, pid, subject, event_id)
        except OUTAGES as exc:
            raise DependencyUnavailable(self.address, str(exc)) from exc
        if done.deleted:
            self._set_cache_keys(set(self.state.cache_keys) - set(done.deleted))
        if done.hint is not None:
            hint = FeedItem(
                key=f"hint:{event_id}",
                event="dashboard.hint",
                data=done.hint,
                property_id=pid,
            )
            await self._guarded(self._fan_out(hint))
        return done.voided or done.hint is not None or bool(done.deleted)

    async def _inbox_event(self, event: DomainEvent) -> bool:
        """Project an alert/suggestion event into its inbox and fan it out. A malformed one is
        logged and skipped: redelivering it would not make it readable."""
        tenant, pid = self.address.tenant, self.address.id
        try:
            if event.subject == ALERT_RAISED:
                alert = _alert_raised.decode(event.data)
                await self._deps.inboxes.put_alert(tenant, alert)
                item = _item(f"alert:{alert.alert_id}", "alert", alert, pid)
            elif event.subject == ALERT_RESOLVED:
                resolved = _alert_resolved.decode(event.data)
                await self._deps.inboxes.drop_alert(tenant, pid, resolved.alert_id)
                item = _item(f"alert-resolved:{resolved.alert_id}", "alert.resolved", resolved, pid)
            elif event.subject == SUGGESTION_CREATED:
                created = _suggestion_created.decode(event.data)
                await self._deps.inboxes.put_suggestion(tenant, created)
                item = _item(f"ai:{created.suggestion_id}", "ai.suggestion", created, pid)
            elif event.subject == SUGGESTION_INVALIDATED:
                gone = _suggestion_invalidated.decode(event.data)
                await self._deps.inboxes.drop_suggestion(tenant, pid, gone.suggestion_id)
                item = _invalidated(gone.suggestion_id, pid, gone.reason or "invalidated")
            else:
                return False
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning(
                "inbox event unreadable; skipped",
                extra={"actor": str(self.address), "eventId": event.event_id, "error": str(exc)},
            )
            return False
        await self._fan_out(item)
        return True

    async def _fan_out(self, item: FeedItem) -> int:
        """To every device following the property, on any instance (the ledger knows them)."""
        await self.catch_up()
        return await deliver(
            self._deps.log,
            self._deps.feed,
            self.address.tenant,
            self.state.subscribed_devices,
            item,
            stream=f"property-feed:{self.address.id}",
        )

    async def _acknowledge(self, command: AcknowledgeAlert) -> RecordedAck:
        """Postgres first (the forwarder's outbox), then the ledger, then the projection; a
        retry after a crash between them completes the rest (deterministic ledger id)."""
        tenant, pid = self.address.tenant, self.address.id
        ack = AlertAck(
            tenant=tenant,
            property_id=pid,
            alert_id=command.alert_id,
            operator_id=command.operator_id,
            device_id=command.device_id,
            at=datetime.now(UTC),
        )
        recorded = await self._deps.acks.record(ack)
        first = recorded.ack
        row = AlertAcknowledged(
            alert_id=first.alert_id,
            property_id=pid,
            operator_id=first.operator_id,
            device_id=first.device_id,
            at=first.at,
        )
        stream = f"alert:{first.alert_id}"
        mine = recorded.created or (first.operator_id, first.device_id) == (
            command.operator_id,
            command.device_id,
        )
        outcome = "success" if mine else "unchanged"  # another operator's ack stands
        activity = self._activity(command, "alert.acknowledge", stream, outcome)
        await self._record(
            stream, ALERT_ACKNOWLEDGED, row, first.operator_id, first.device_id, activity
        )
        await self._project(self._deps.inboxes.mark_acknowledged(tenant, first))
        return recorded

    async def _decided(self, command: DecideSuggestion) -> SuggestionRecorded:
        tenant, pid = self.address.tenant, self.address.id
        row = SuggestionDecided(
            suggestion_id=command.suggestion_id,
            property_id=pid,
            decision=command.decision,
            operator_id=command.operator_id,
            device_id=command.device_id,
            modification=command.modification,
            at=datetime.now(UTC),
        )
        stream = f"suggestion:{command.suggestion_id}"
        activity = self._activity(command, "suggestion.decide", stream, command.decision)
        await self._record(
            stream, SUGGESTION_DECIDED, row, command.operator_id, command.device_id, activity
        )
        await self._project(self._deps.inboxes.drop_suggestion(tenant, pid, command.suggestion_id))
        await self._fan_out(_invalidated(command.suggestion_id, pid, "decided"))
        return SuggestionRecorded(suggestion_id=command.suggestion_id, decision=command.decision)

    async def _project(self, change: Awaitable[None]) -> None:
        """A projection change made on behalf of a recorded command: best effort. The record
        (Postgres, the ledger) is what counts, and the inbox is refreshed from its upstream and
        expires; failing the command now would only make a retry meet a decided upstream."""
        try:
            await change
        except OUTAGES as exc:
            log.warning(
                "inbox projection not updated",
                extra={"actor": str(self.address), "error": str(exc)},
            )

    def _activity(
        self, command: AcknowledgeAlert | DecideSuggestion, action: str, stream: str, outcome: str
    ) -> NewEvent:
        """The acting operator's ``operator.activity.v1`` row (``actors/activity.py``), one per
        operator and record: a retry, or the same operator again, writes nothing new."""
        return activity_event(
            tenant=self.address.tenant,
            operator_id=command.operator_id,
            device_id=command.device_id,
            action=action,
            property_id=self.address.id,
            target=stream,
            outcome=outcome,
            ref=stream,
            key=stream,
        )

    async def _record(
        self,
        stream: str,
        subject: str,
        row: msgspec.Struct,
        operator_id: str,
        device_id: str,
        activity: NewEvent,
    ) -> None:
        """Append the one row of ``stream`` and the acting operator's activity row, in one
        append: the row's id derives from the stream, so a second ack/decision (or a retry)
        returns the first's position and writes nothing."""
        event_id = uuid.uuid5(INBOX_IDS, f"{self.address.tenant}/{stream}")
        await self._deps.log.append(
            [
                NewEvent(
                    tenant=self.address.tenant,
                    stream=stream,
                    subject=subject,
                    payload=msgspec.Raw(_encoder.encode(row)),
                    event_id=event_id,
                    operator_id=operator_id,
                    device_id=device_id,
                ),
                activity,
            ]
        )

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


_encoder = msgspec.json.Encoder()


def _item(key: str, event: str, data: msgspec.Struct, property_id: str) -> FeedItem:
    """A stream event whose data is the domain event's (without the tenant, which the device
    knows)."""
    body = msgspec.to_builtins(data)
    body.pop("tenantId", None)
    return FeedItem(key=key, event=event, data=body, property_id=property_id)


def _invalidated(suggestion_id: str, property_id: str, reason: str) -> FeedItem:
    return FeedItem(
        key=f"ai-invalidated:{suggestion_id}",
        event="ai.suggestion.invalidated",
        data={"suggestionId": suggestion_id, "propertyId": property_id, "reason": reason},
        property_id=property_id,
    )


def property_kind(deps: PropertyDeps) -> ActorKind:
    return ActorKind(
        name=KIND,
        messages=PropertyMessage,
        accepts=(
            SubscribeDevice,
            UnsubscribeDevice,
            TrackCacheKey,
            InvalidateCache,
            AcknowledgeAlert,
            DecideSuggestion,
            MutationApplied,
            GetState,
            DomainEvent,
        ),
        factory=lambda address: PropertyActor(address, deps),
    )
