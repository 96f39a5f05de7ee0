"""In-memory implementations of the actors' ports, so actor behaviour (supervision,
passivation, rehydration, routing) can be tested in milliseconds without Postgres or Redis —
as httpx ships ``MockTransport``. They keep the ports' contracts (versions, conflicts,
idempotency, revocation) and can be switched "down" to simulate an outage.

The real adapters are tested against real servers (``tests/ledger``, ``tests/edge``); these are
for the core's own tests and for tools.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import trio

from actors.ports import DependencyDown, Invalidation
from ledger.database import DatabaseUnavailable
from ledger.device_status import RECENT_COMMANDS, DeviceSyncStatus, HeartbeatOutcome
from ledger.model import AppendResult, NewEvent, RecordedEvent, VersionConflict
from schemas.sessions import BackofficeSession


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
    """The ``SyncCursors`` port."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.cursors: dict[tuple[str, str], str] = {}

    async def get(self, tenant: str, device_id: str) -> str | None:
        await trio.lowlevel.checkpoint()
        self.outage.check(DependencyDown("memory cache tier", "down"))
        return self.cursors.get((tenant, device_id))


class MemoryDeviceStatus:
    """The ``DeviceStatus`` port: one row per device, recent command ids counted once."""

    def __init__(self, outage: Outage | None = None) -> None:
        self.outage = outage or Outage()
        self.rows: dict[tuple[str, str], DeviceSyncStatus] = {}
        self._recent: dict[tuple[str, str], list[str]] = {}

    async def get(self, tenant: str, device_id: str) -> DeviceSyncStatus | None:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory database is down"))
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
    ) -> HeartbeatOutcome:
        await trio.lowlevel.checkpoint()
        self.outage.check(DatabaseUnavailable("memory database is down"))
        key = (tenant, device_id)
        recent = self._recent.setdefault(key, [])
        duplicate = command_id in recent
        old = self.rows.get(key)
        if not duplicate:
            recent.append(command_id)
            del recent[:-RECENT_COMMANDS]
        count = (old.heartbeat_count if old else 0) + (0 if duplicate else 1)
        row = DeviceSyncStatus(
            tenant=tenant,
            device_id=device_id,
            last_seen_at=max(at, old.last_seen_at) if old else at,
            app_version=app_version,
            operator_id=operator_id or (old.operator_id if old else None),
            heartbeat_count=count,
        )
        self.rows[key] = row
        return HeartbeatOutcome(status=row, duplicate=duplicate)


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
        return Invalidation(voided=bool(words), deleted=stale, hinted=bool(words))


def payloads(
    log: MemoryEventLog, tenant: str, stream: str, type_: type[msgspec.Struct]
) -> list[msgspec.Struct]:
    """The decoded payloads of one stream (for assertions)."""
    return [
        msgspec.json.decode(bytes(e.payload), type=type_)
        for e in log.events
        if (e.tenant, e.stream) == (tenant, stream)
    ]
