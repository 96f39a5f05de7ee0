"""In-memory implementations of the actors' ports, so actor behaviour (supervision,
passivation, rehydration, routing) can be tested in milliseconds without Postgres or Redis —
as httpx ships ``MockTransport``. They keep the ports' contracts (versions, conflicts,
idempotency, revocation) and can be switched "down" to simulate an outage.

The real adapters are tested against real servers (``tests/ledger``, ``tests/edge``); these are
for the core's own tests and for tools.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import trio

from actors.ports import (
    AlertAck,
    CachedCursor,
    DependencyDown,
    Invalidation,
    RecordedAck,
    StreamClaim,
    StreamGrant,
    StreamsThrottled,
)
from ledger.database import DatabaseUnavailable
from ledger.device_status import (
    RECENT_COMMANDS,
    CursorMove,
    DeviceSyncStatus,
    HeartbeatOutcome,
)
from ledger.model import AppendResult, NewEvent, RecordedEvent, VersionConflict
from schemas.inbox import AlertRaised, SuggestionCreated
from schemas.sessions import BackofficeSession
from schemas.sse import FeedItem


@dataclass
class Outage:
    """A switch shared by fakes: while ``down``, every call raises the port's outage error."""

    down: bool = False

    def check(self, error: Exception) -> None:
        if self.down:
            raise error


class MemoryEventLog:
    """The ``EventLog`` port: per-stream versions, optimistic concurrency, idempotent ids."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.events: list[RecordedEvent] = []
        self._by_id: dict[object, AppendResult] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._positions = itertools.count(1)
        self.appended = trio.Event()  # set (and replaced) on every append: tests wait on it

    async def append(
        self, events: Sequence[NewEvent], *, timeout: float = 5.0
    ) -> list[AppendResult]:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory ledger is down"))
        if all(e.event_id in self._by_id for e in events):
            return [self._by_id[e.event_id] for e in events]
        checked: set[tuple[str, str]] = set()
        for e in events:  # the first event of each stream carries the expected version
            stream = (e.tenant, e.stream)
            current = self._versions.get(stream, 0)
            if stream not in checked and e.expected_version not in (None, current):
                raise VersionConflict(f"{e.stream}: at {current}, expected {e.expected_version}")
            checked.add(stream)
        results = []
        for e in events:
            if e.event_id in self._by_id:  # recorded already (as ledger_append: per event)
                results.append(self._by_id[e.event_id])
                continue
            version = self._versions.get((e.tenant, e.stream), 0) + 1
            self._versions[(e.tenant, e.stream)] = version
            result = AppendResult(position=next(self._positions), version=version)
            self._by_id[e.event_id] = result
            self.events.append(_recorded(e, result))
            results.append(result)
        self.appended.set()
        self.appended = trio.Event()
        return results

    async def read_stream(
        self, tenant: str, stream: str, *, after_version: int = 0, limit: int = 10_000
    ) -> list[RecordedEvent]:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory ledger is down"))
        found = [
            e
            for e in self.events
            if e.tenant == tenant and e.stream == stream and e.version > after_version
        ]
        return found[:limit]

    def subjects(self, tenant: str, stream: str) -> list[str]:
        return [e.subject for e in self.events if (e.tenant, e.stream) == (tenant, stream)]


def _recorded(event: NewEvent, result: AppendResult) -> RecordedEvent:
    return RecordedEvent(
        position=result.position,
        event_id=event.event_id,
        tenant=event.tenant,
        stream=event.stream,
        version=result.version,
        subject=event.subject,
        payload=event.payload
        if isinstance(event.payload, msgspec.Raw)
        else msgspec.Raw(msgspec.json.encode(event.payload)),
        operator_id=event.operator_id,
        device_id=event.device_id,
        request_id=event.request_id,
        occurred_at=event.occurred_at or datetime.now(UTC),
        recorded_at=datetime.now(UTC),
    )


class MemorySessionTier:
    """The ``SessionTier`` port, with the revocation markers every instance would read (and
    the device each marker remembers as the session's holder, as the Redis adapter does)."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.sessions: dict[tuple[str, str], BackofficeSession] = {}
        self.revoked: set[tuple[str, str]] = set()
        self.holders: dict[tuple[str, str], str] = {}  # revoked session → its device
        self.device_session: dict[tuple[str, str], str] = {}
        self.operator_devices: dict[tuple[str, str], set[str]] = {}

    def _check(self) -> None:
        self.outage.check(DependencyDown("memory session tier", "down"))

    async def open(self, session: BackofficeSession) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        t = session.tenant
        self.sessions[(t, session.session_id)] = session
        self.device_session[(t, session.device_id)] = session.session_id
        self.operator_devices.setdefault((t, session.operator_id), set()).add(session.device_id)

    async def close(self, tenant: str, session_id: str, device_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.revoked.add((tenant, session_id))
        self.holders[(tenant, session_id)] = device_id
        closed = self.sessions.pop((tenant, session_id), None)
        if self.device_session.get((tenant, device_id)) == session_id:
            del self.device_session[(tenant, device_id)]
        if closed is None:
            return
        current = self.device_session.get((tenant, device_id))
        holder = self.sessions.get((tenant, current)) if current else None
        if holder is None or holder.operator_id != closed.operator_id:
            self.operator_devices.get((tenant, closed.operator_id), set()).discard(device_id)

    async def revoke(self, tenant: str, session_id: str) -> str | None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.revoked.add((tenant, session_id))
        session = self.sessions.get((tenant, session_id))
        if session is not None:
            self.holders.setdefault((tenant, session_id), session.device_id)
        return self.holders.get((tenant, session_id))

    async def current(self, tenant: str, device_id: str) -> str | None:
        await trio.lowlevel.checkpoint()
        self._check()
        return self.device_session.get((tenant, device_id))

    async def devices_of(self, tenant: str, operator_id: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        self._check()
        return sorted(self.operator_devices.get((tenant, operator_id), ()))


class MemorySyncCursors:
    """The ``SyncCursors`` port: a copy per device, a newer revision never replaced."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.cursors: dict[tuple[str, str], CachedCursor] = {}

    async def get(self, tenant: str, device_id: str) -> CachedCursor | None:
        await trio.lowlevel.checkpoint()
        self.outage.check(DependencyDown("memory cache tier", "down"))
        return self.cursors.get((tenant, device_id))

    async def put(self, tenant: str, device_id: str, cached: CachedCursor) -> None:
        await trio.lowlevel.checkpoint()
        self.outage.check(DependencyDown("memory cache tier", "down"))
        held = self.cursors.get((tenant, device_id))
        if held is None or held.revision < cached.revision:
            self.cursors[(tenant, device_id)] = cached


class MemoryDeviceStatus:
    """The ``DeviceStatus`` port: one row per device, recent command ids counted once, the
    cursor moved forward only (or reset on a matching revision)."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.rows: dict[tuple[str, str], DeviceSyncStatus] = {}
        self._recent: dict[tuple[str, str], list[str]] = {}

    async def get(self, tenant: str, device_id: str) -> DeviceSyncStatus | None:
        await self._check()
        return self.rows.get((tenant, device_id))

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
        await self._check()
        key = (tenant, device_id)
        recent = self._recent.setdefault(key, [])
        duplicate = command_id in recent
        old = self._row(tenant, device_id, at, operator_id)
        if not duplicate:
            recent.append(command_id)
            del recent[:-RECENT_COMMANDS]
        row = msgspec.structs.replace(
            old,
            last_seen_at=max(at, old.last_seen_at),
            app_version=app_version,
            operator_id=operator_id or old.operator_id,
            heartbeat_count=old.heartbeat_count + (0 if duplicate else 1),
        )
        if not duplicate:
            row = msgspec.structs.replace(row, online_since=online_since or old.online_since)
        if not duplicate and queued_actions is not None:
            oldest = None if queued_actions == 0 else old.oldest_queued_at
            row = msgspec.structs.replace(
                row, queued_actions=queued_actions, oldest_queued_at=oldest, hint_at=at
            )
        self.rows[key] = row
        return HeartbeatOutcome(status=row, duplicate=duplicate)

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
        await self._check()
        old = self._row(tenant, device_id, at, operator_id)
        if old.cursor_version is not None and old.cursor_version >= cursor:
            return CursorMove(status=old, changed=False)
        return CursorMove(status=self._move(old, cursor, at, source), changed=True)

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
        await self._check()
        old = self._row(tenant, device_id, at, operator_id)
        if old.cursor_revision != expected_revision or old.cursor_version == cursor:
            return CursorMove(status=old, changed=False)
        return CursorMove(status=self._move(old, cursor, at, "sync_service"), changed=True)

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
        await self._check()
        old = self._row(tenant, device_id, at, operator_id)
        if old.hint_at is not None and old.hint_at > at:
            return old
        row = msgspec.structs.replace(
            old, queued_actions=queued_actions, oldest_queued_at=oldest_queued_at, hint_at=at
        )
        self.rows[(tenant, device_id)] = row
        return row

    async def _check(self) -> None:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory database is down"))

    def _row(
        self, tenant: str, device_id: str, at: datetime, operator_id: str | None
    ) -> DeviceSyncStatus:
        return self.rows.get((tenant, device_id)) or DeviceSyncStatus(
            tenant=tenant,
            device_id=device_id,
            last_seen_at=at,
            app_version=None,
            operator_id=operator_id,
            heartbeat_count=0,
        )

    def _move(
        self, old: DeviceSyncStatus, cursor: int, at: datetime, source: str
    ) -> DeviceSyncStatus:
        row = msgspec.structs.replace(
            old,
            cursor_version=cursor,
            cursor_at=at,
            cursor_revision=old.cursor_revision + 1,
            cursor_previous=old.cursor_version,
            cursor_source=source,
        )
        self.rows[(old.tenant, old.device_id)] = row
        return row


@dataclass
class MemoryPropertyViews:
    """The ``PropertyViews`` port: a name index per property; ``invalidate`` deletes the names
    whose text contains one of ``affects[subject prefix]`` (tests choose the mapping)."""

    affects: dict[str, list[str]] = field(default_factory=dict)
    outage: Outage = field(default_factory=Outage)
    index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    invalidations: list[tuple[str, str, str]] = field(default_factory=list)

    def _check(self) -> None:
        self.outage.check(DependencyDown("memory cache tier", "down"))

    async def names(self, tenant: str, property_id: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        self._check()
        return sorted(self.index.get((tenant, property_id), ()))

    async def track(self, tenant: str, property_id: str, name: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.index.setdefault((tenant, property_id), set()).add(name)

    async def delete(self, tenant: str, property_id: str, names: Sequence[str]) -> int:
        await trio.lowlevel.checkpoint()
        self._check()
        known = self.index.get((tenant, property_id), set())
        deleted = len(known & set(names))
        known.difference_update(names)
        return deleted

    async def invalidate(
        self, tenant: str, property_id: str, subject: str, event_id: str
    ) -> Invalidation:
        await trio.lowlevel.checkpoint()
        self._check()
        self.invalidations.append((tenant, property_id, event_id))
        words = next((w for p, w in self.affects.items() if subject.startswith(p)), [])
        known = self.index.get((tenant, property_id), set())
        stale = sorted(n for n in known if any(w in n for w in words))
        known.difference_update(stale)
        hint = {"subject": subject, "eventId": event_id} if words else None
        return Invalidation(voided=bool(words), deleted=stale, hint=hint)


DeviceKey = tuple[str, str]  # (tenant, device id)


def _feed_seq(entry_id: str) -> tuple[int, int]:
    """A feed id ``"<ms>-<seq>"`` as a sortable pair (Redis Stream ids have this form)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class MemoryDeviceFeed:
    """The ``DeviceFeed`` port: per device a bounded list of ``(id, FeedItem)`` with strictly
    increasing ids (``"1-0"``, ``"2-0"``, …), a key already held is not appended again, one
    owning stream per device, and a simple limit on how many streams a device may open per
    ``window`` seconds (``trio.current_time()``, so a ``MockClock`` drives it).

    For assertions: :meth:`entries` / :meth:`items`, :attr:`owners`, :attr:`replaced` (the
    tokens told they were replaced), :attr:`appends` (every call, even a duplicate's) and
    :attr:`appended`, an event set (and replaced) whenever an item was appended.
    """

    def __init__(
        self,
        outage: Outage | None = None,
        *,
        maxlen: int = 1_000,
        max_opens: int = 10,
        window: float = 60.0,
    ) -> None:
        self.outage = outage or Outage()
        self.maxlen = maxlen
        self.max_opens = max_opens
        self.window = window
        self.feeds: dict[DeviceKey, list[tuple[str, FeedItem]]] = {}
        self.owners: dict[DeviceKey, StreamClaim] = {}
        self.replaced: list[tuple[str, str, str]] = []  # (tenant, device, token) told to close
        self.released: list[tuple[str, str, str]] = []
        self.appends: list[tuple[str, tuple[str, ...], str]] = []  # (tenant, devices, key)
        self.appended = trio.Event()
        self._keys: dict[DeviceKey, set[str]] = {}
        self._last: dict[DeviceKey, int] = {}
        self._trimmed: dict[DeviceKey, int] = {}  # the newest sequence number trimmed away
        self._opens: dict[DeviceKey, deque[float]] = {}

    def _check(self) -> None:
        self.outage.check(DependencyDown("memory device feed", "down"))

    async def append(self, tenant: str, device_ids: Sequence[str], item: FeedItem) -> int:
        await trio.lowlevel.checkpoint()
        self._check()
        self.appends.append((tenant, tuple(device_ids), item.key))
        count = 0
        for device_id in dict.fromkeys(device_ids):
            key = (tenant, device_id)
            keys = self._keys.setdefault(key, set())
            if item.key in keys:
                continue
            keys.add(item.key)
            seq = self._last.get(key, 0) + 1
            self._last[key] = seq
            entries = self.feeds.setdefault(key, [])
            entries.append((f"{seq}-0", item))
            if len(entries) > self.maxlen:
                dropped = entries[: len(entries) - self.maxlen]
                del entries[: len(dropped)]
                self._trimmed[key] = _feed_seq(dropped[-1][0])[0]
            count += 1
        if count:
            self.appended.set()
            self.appended = trio.Event()
        return count

    async def claim(self, tenant: str, device_id: str, claim: StreamClaim) -> StreamGrant:
        await trio.lowlevel.checkpoint()
        self._check()
        key = (tenant, device_id)
        now = trio.current_time()
        opens = self._opens.setdefault(key, deque())
        while opens and opens[0] <= now - self.window:
            opens.popleft()
        if len(opens) >= self.max_opens:
            raise StreamsThrottled(max(1, math.ceil(opens[0] + self.window - now)))
        opens.append(now)
        previous = self.owners.get(key)
        replaced = previous is not None and previous.token != claim.token
        if previous is not None and replaced:
            self.replaced.append((tenant, device_id, previous.token))
        self.owners[key] = claim
        last = self._last.get(key, 0)
        latest = f"{last}-0"
        if claim.after is None:
            return StreamGrant(resume_from=latest, gap=False, replaced=replaced)
        after = _feed_seq(claim.after)[0]
        if after < self._trimmed.get(key, 0) or after > last:  # trimmed, or never this feed's
            return StreamGrant(resume_from=latest, gap=True, replaced=replaced)
        return StreamGrant(resume_from=claim.after, gap=False, replaced=replaced)

    async def release(self, tenant: str, device_id: str, token: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        key = (tenant, device_id)
        self.released.append((tenant, device_id, token))
        owner = self.owners.get(key)
        if owner is not None and owner.token == token:
            del self.owners[key]

    def entries(
        self, tenant: str, device_id: str, after: str | None = None
    ) -> list[tuple[str, FeedItem]]:
        """The device's feed (after the id ``after``, if given), oldest first."""
        held = self.feeds.get((tenant, device_id), [])
        if after is None:
            return list(held)
        return [(i, item) for i, item in held if _feed_seq(i) > _feed_seq(after)]

    def items(self, tenant: str, device_id: str) -> list[FeedItem]:
        return [item for _, item in self.entries(tenant, device_id)]


class MemoryInboxes:
    """The ``Inboxes`` port: the ``AlertInbox`` and ``AISuggestionInbox`` per property."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.alerts: dict[tuple[str, str], dict[str, AlertRaised]] = {}
        self.acknowledged: dict[tuple[str, str], dict[str, AlertAck]] = {}
        self.suggestions: dict[tuple[str, str], dict[str, SuggestionCreated]] = {}

    def _check(self) -> None:
        self.outage.check(DependencyDown("memory cache tier", "down"))

    async def put_alert(self, tenant: str, alert: AlertRaised) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.alerts.setdefault((tenant, alert.property_id), {})[alert.alert_id] = alert

    async def drop_alert(self, tenant: str, property_id: str, alert_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.alerts.get((tenant, property_id), {}).pop(alert_id, None)

    async def mark_acknowledged(self, tenant: str, ack: AlertAck) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.acknowledged.setdefault((tenant, ack.property_id), {})[ack.alert_id] = ack

    async def put_suggestion(self, tenant: str, suggestion: SuggestionCreated) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        held = self.suggestions.setdefault((tenant, suggestion.property_id), {})
        held[suggestion.suggestion_id] = suggestion

    async def drop_suggestion(self, tenant: str, property_id: str, suggestion_id: str) -> None:
        await trio.lowlevel.checkpoint()
        self._check()
        self.suggestions.get((tenant, property_id), {}).pop(suggestion_id, None)

    def alert_ids(self, tenant: str, property_id: str) -> list[str]:
        return sorted(self.alerts.get((tenant, property_id), {}))

    def suggestion_ids(self, tenant: str, property_id: str) -> list[str]:
        return sorted(self.suggestions.get((tenant, property_id), {}))


class MemoryAlertAcks:
    """The ``AlertAcks`` port (Postgres): the first acknowledgement of an alert stands; a
    later one returns it unchanged. :meth:`mark_forwarded` is what the forwarder would do once
    notification-service has it."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.acks: dict[tuple[str, str], AlertAck] = {}
        self.forwarded: set[tuple[str, str]] = set()

    async def record(self, ack: AlertAck) -> RecordedAck:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory database is down"))
        key = (ack.tenant, ack.alert_id)
        first = self.acks.get(key)
        if first is not None:
            return RecordedAck(ack=first, created=False, forwarded=key in self.forwarded)
        self.acks[key] = ack
        return RecordedAck(ack=ack, created=True, forwarded=False)

    def mark_forwarded(self, tenant: str, alert_id: str) -> None:
        self.forwarded.add((tenant, alert_id))


def payloads(
    log: MemoryEventLog, tenant: str, stream: str, type_: type[msgspec.Struct]
) -> list[msgspec.Struct]:
    """The decoded payloads of one stream (for assertions)."""
    return [
        msgspec.json.decode(bytes(e.payload), type=type_)
        for e in log.events
        if (e.tenant, e.stream) == (tenant, stream)
    ]
