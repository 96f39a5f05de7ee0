"""What the actors need from the world, as protocols. The core depends on these; the edge
(``edge/adapters.py`` and ``edge/dashboard``) implements them over Redis, Postgres and the
dashboard engine, and ``actors/testing.py`` implements them in memory.

A port's implementation signals an outage of what is behind it by raising
:class:`DependencyDown` (or, for Postgres, ``ledger.database.DatabaseUnavailable``): an outage is
not a bug in the actor, so the runtime answers the message with a typed "dependency
unavailable" instead of crashing the actor (FAILURE_MODES F-20).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ledger.database import DatabaseUnavailable
from ledger.device_status import CursorMove, DeviceSyncStatus, HeartbeatOutcome
from ledger.model import AppendResult, NewEvent, RecordedEvent
from schemas.inbox import AlertAck as AlertAck
from schemas.inbox import AlertRaised, SuggestionCreated
from schemas.inbox import RecordedAck as RecordedAck
from schemas.sessions import BackofficeSession
from schemas.sse import FeedItem


class DependencyDown(Exception):
    """The dependency behind a port did not answer (down, timed out, refused)."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency


OUTAGES: tuple[type[Exception], ...] = (DependencyDown, DatabaseUnavailable)
"""What an outage looks like to the runtime (a port's, or Postgres's through the ledger)."""


class EventLog(Protocol):
    """The ledger, as actors use it (``ledger.appendlog.Ledger``)."""

    async def append(
        self, events: Sequence[NewEvent], *, timeout: float = 5.0
    ) -> list[AppendResult]:
        """Durable on return; all-or-nothing; ``VersionConflict`` if a stream moved on."""
        ...

    async def read_stream(
        self, tenant: str, stream: str, *, after_version: int = 0, limit: int = 10_000
    ) -> list[RecordedEvent]:
        """Events of one stream with ``version > after_version``, oldest first."""
        ...


class SessionTier(Protocol):
    """Sessions and revocation markers shared by every instance (the Redis session tier)."""

    async def open(self, session: BackofficeSession) -> None:
        """Store the session and index it by device and operator."""
        ...

    async def close(self, tenant: str, session_id: str, device_id: str) -> None:
        """Mark the session revoked for every instance (remembering ``device_id`` as its
        holder), then forget it: its blob, the device's current-session reference if it is
        this session, and the device in its operator's index unless the device's current
        session is still that operator's."""
        ...

    async def revoke(self, tenant: str, session_id: str) -> str | None:
        """Mark the session revoked for every instance — first, from ``(tenant, session_id)``
        alone — then return the device holding it (from its blob, or from the marker a close
        left), or ``None`` when the tier never knew it. Idempotent."""
        ...

    async def current(self, tenant: str, device_id: str) -> str | None:
        """The id of the device's open session, if any."""
        ...

    async def devices_of(self, tenant: str, operator_id: str) -> list[str]:
        """The devices the operator has sessions on (a device leaves the index when the
        operator's session there closes; it may linger while another operator's session
        replaced it, so a caller checks whose session a device holds)."""
        ...


class DeviceStatus(Protocol):
    """``DeviceSyncStatus`` per device (``ledger.device_status.DeviceStatusStore``)."""

    async def get(self, tenant: str, device_id: str) -> DeviceSyncStatus | None: ...

    async def record_heartbeat(
        self,
        tenant: str,
        device_id: str,
        *,
        at: datetime,
        app_version: str,
        operator_id: str | None,
        command_id: str,
        queued_actions: int | None = None,
        online_since: datetime | None = None,
    ) -> HeartbeatOutcome:
        """Upsert; a command id seen recently is counted once (``duplicate``) and changes
        nothing else. ``queued_actions`` / ``online_since``: the heartbeat's sync fields."""
        ...

    async def advance_cursor(
        self,
        tenant: str,
        device_id: str,
        cursor: int,
        *,
        at: datetime,
        source: str,
        operator_id: str | None,
    ) -> CursorMove:
        """Move the sync cursor forward to ``cursor``; an older one changes nothing."""
        ...

    async def reset_cursor(
        self,
        tenant: str,
        device_id: str,
        cursor: int,
        *,
        expected_revision: int,
        at: datetime,
        operator_id: str | None,
    ) -> CursorMove:
        """Set the cursor to sync-service's authoritative value (up or down) if its revision
        is still ``expected_revision``."""
        ...

    async def record_queue_hint(
        self,
        tenant: str,
        device_id: str,
        *,
        queued_actions: int,
        oldest_queued_at: datetime | None,
        at: datetime,
        operator_id: str | None,
    ) -> DeviceSyncStatus:
        """Store the ``OfflineActionQueueHint`` (a newer stored one wins)."""
        ...


class CachedCursor(msgspec.Struct, frozen=True, kw_only=True):
    """A device's sync cursor as the cache tier holds it: a copy of ``DeviceSyncStatus`` at
    ``revision`` (a copy of an older revision never replaces a newer one)."""

    cursor: int
    revision: int
    at: datetime | None = None
    source: str | None = None

    @classmethod
    def of(cls, status: DeviceSyncStatus) -> CachedCursor | None:
        if status.cursor_version is None:
            return None
        return cls(
            cursor=status.cursor_version,
            revision=status.cursor_revision,
            at=status.cursor_at,
            source=status.cursor_source,
        )


class SyncCursors(Protocol):
    """The devices' sync cursors in the cache tier (a cache of ``DeviceSyncStatus``: losing
    one costs a Postgres read)."""

    async def get(self, tenant: str, device_id: str) -> CachedCursor | None: ...

    async def put(self, tenant: str, device_id: str, cached: CachedCursor) -> None:
        """Keep ``cached`` unless a newer revision is held."""
        ...


class Invalidation(msgspec.Struct, frozen=True, kw_only=True):
    """What a cache-affecting domain event did to a property's composed views."""

    voided: bool  # their generations were bumped: old entries can no longer be read
    deleted: list[str]  # cache names whose entries were deleted
    hint: dict[str, Any] | None = None  # ``dashboard.hint`` data for the property's devices


class PropertyViews(Protocol):
    """A property's composed views (dashboards, workbench boards) in the cache tier, and the
    engine that composes them. The cache keys of a property are written only behind this port
    (``edge/dashboard/cache.py``)."""

    async def names(self, tenant: str, property_id: str) -> list[str]:
        """The cache names composed for the property (its index)."""
        ...

    async def track(self, tenant: str, property_id: str, name: str) -> None: ...

    async def delete(self, tenant: str, property_id: str, names: Sequence[str]) -> int:
        """Delete the entries and their index entries; returns how many entries existed."""
        ...

    async def invalidate(
        self, tenant: str, property_id: str, subject: str, event_id: str
    ) -> Invalidation:
        """A domain event made some views stale: supersede their running compositions, void
        their entries (generation bump), hint the desktops, delete the stale entries. Raises
        :class:`DependencyDown` only when stale entries could neither be voided nor deleted
        (then the event is redelivered)."""
        ...


class InboundEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A consumed domain event as the bus subscriber hands it to the actors.

    On the wire a domain event's data is one JSON object that always has ``tenantId`` and, where
    it concerns one, ``propertyId`` / ``deviceId`` / ``operatorId`` / ``sessionId``.
    """

    subject: str
    event_id: str
    tenant: str
    data: msgspec.Raw
    attributes: dict[str, str] = msgspec.field(default_factory=dict)


EventHandler = Callable[[InboundEvent], Awaitable[None]]
"""Handles one event; returns only when it was handled (then the subscriber acks), raises to
have it redelivered."""


# --- the device stream (API contract §6) -------------------------------------------------------


class StreamClaim(msgspec.Struct, frozen=True, kw_only=True):
    """A live stream asking to be the device's one stream (across every instance)."""

    token: str  # this connection's random id
    node: str  # the instance holding it (where its feed items are pushed)
    session_id: str
    after: str | None = None  # Last-Event-ID, already checked to be a well-formed feed id


class StreamGrant(msgspec.Struct, frozen=True, kw_only=True):
    """What the claimed stream sends first: the feed after ``resume_from``; with ``gap`` a
    ``session``/``reconnect`` (``history_gap``) before it, because ``after`` is older than what
    the feed still holds."""

    resume_from: str
    gap: bool
    replaced: bool  # another stream of the device was told to close


class StreamsThrottled(Exception):
    """The device opened too many streams lately (it loops): refuse for ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many streams opened; retry after {retry_after} s")
        self.retry_after = retry_after


class DeviceFeed(Protocol):
    """Every device's bounded stream history, shared by all instances; appending an item also
    pushes it to the instance holding the device's live stream, if any."""

    async def append(self, tenant: str, device_ids: Sequence[str], item: FeedItem) -> int:
        """Append ``item`` to each device's feed unless that feed already holds ``item.key``;
        returns how many feeds it was appended to. Idempotent."""
        ...

    async def claim(self, tenant: str, device_id: str, claim: StreamClaim) -> StreamGrant:
        """Make ``claim`` the device's one stream: any other is told it was replaced. Raises
        :class:`StreamsThrottled` when the device opens streams in a loop."""
        ...

    async def release(self, tenant: str, device_id: str, token: str) -> None:
        """The stream ``token`` ended: forget it, unless a newer one replaced it already."""
        ...


# --- the AI suggestion and alert inboxes ---------------------------------------------------------


# ``AlertAck`` and ``RecordedAck`` live in ``schemas.inbox`` (the ledger returns them).


class AlertAcks(Protocol):
    """The durable acknowledgement log (Postgres): written before notification-service is told,
    and the outbox of those forwards (``ledger.alert_acks.AlertAckStore``)."""

    async def record(self, ack: AlertAck) -> RecordedAck:
        """Insert unless ``(tenant, alertId)`` is acknowledged already; idempotent."""
        ...


class Inboxes(Protocol):
    """The ``AISuggestionInbox`` and ``AlertInbox`` projections (cache tier), per property."""

    async def put_alert(self, tenant: str, alert: AlertRaised) -> None: ...

    async def drop_alert(self, tenant: str, property_id: str, alert_id: str) -> None: ...

    async def mark_acknowledged(self, tenant: str, ack: AlertAck) -> None: ...

    async def put_suggestion(self, tenant: str, suggestion: SuggestionCreated) -> None: ...

    async def drop_suggestion(self, tenant: str, property_id: str, suggestion_id: str) -> None: ...


# --- keyboard-shortcut help --------------------------------------------------------------------


class ShortcutHelp(Protocol):
    """The keyboard-shortcut maps rendered for a tenant's operators (cache tier,
    ``edge.preferences_cache.PreferencesCache``)."""

    async def invalidate_tenant(self, tenant: str) -> None:
        """Every map rendered for the tenant is stale from now on (a theme was published);
        raises :class:`DependencyDown` when that could not be recorded (then redeliver)."""
        ...
