"""DeviceActor ``(tenant, deviceId)``: one staff workstation's session and sync status.

Ledger-held state (stream ``device:<deviceId>``): the device's sessions (``session.opened.v1``,
``session.closed.v1``); heartbeat telemetry (``device.heartbeat.v1``) is appended for a sample
of heartbeats only (``BFF_HEARTBEAT_SAMPLE_RATE``, SERVICE_OVERVIEW/DEPLOYMENT_TOPOLOGY: high
volume, low value); the sync cursor's changes (``sync.cursor_advanced.v1``) and handshakes
(``sync.handshake_completed.v1``, see ``actors/device_sync.py``). Postgres-held state:
``DeviceSyncStatus`` (last seen, app version, heartbeat count — every heartbeat, retries counted
once —, the sync cursor, the offline-queue hint). Redis-held state: the session blob and
revocation marker (session tier, shared by every instance) and a copy of the sync cursor (cache
tier).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from actors.address import DEVICE as KIND
from actors.address import ActorAddress
from actors.delivery import deliver
from actors.device_sync import (
    SYNC_MESSAGES,
    AdvanceCursor,
    CompleteHandshake,
    CursorAck,
    RecordQueueHint,
    advanced_event,
    handshake_event,
)
from actors.errors import CommandRejected
from actors.eventsourced import EventSourced, Pending
from actors.kind import ActorKind
from actors.messages import CommandId, DomainEvent, GetState, Handled, Message
from actors.mutations import MUTATION_MESSAGES, RecordMutationAttempt, RecordMutationOutcome
from actors.mutations import record_mutation as _record_mutation
from actors.ports import (
    CachedCursor,
    DependencyDown,
    DeviceFeed,
    DeviceStatus,
    EventLog,
    SessionTier,
    StreamClaim,
    StreamGrant,
    StreamsThrottled,
    SyncCursors,
)
from ledger.device_status import DeviceSyncStatus
from schemas.actor_events import (
    HEARTBEAT,
    SESSION_CLOSED,
    SESSION_OPENED,
    HeartbeatRecorded,
    SessionClosed,
    SessionOpened,
)
from schemas.identifiers import IDENTIFIER_PATTERN, Identifier
from schemas.sessions import BackofficeSession
from schemas.sse import END_OF_STREAM, FeedItem

log = logging.getLogger("bff.actors.device")

SESSION_REVOKED = "melmastoon.iam.session.revoked.v1"
USER_DISABLED = "melmastoon.iam.user.disabled.v1"
REVOCATIONS = (SESSION_REVOKED, USER_DISABLED)
RECENT_SESSIONS = 16
HEARTBEAT_IDS = uuid.UUID("6f1c5d2e-9a43-4d2b-8c7e-0b5a3f1e2d4c")  # namespace of telemetry ids

AppVersion = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
CloseReason = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


# --- messages ------------------------------------------------------------------------------


class RecordHeartbeat(Message, frozen=True, tag="recordHeartbeat"):
    """The device is alive. ``commandId`` makes retries idempotent (counted once)."""

    command_id: CommandId
    app_version: AppVersion
    operator_id: str | None = None
    # The heartbeat's sync fields (DeviceSyncStatus and the offline-queue hint).
    sync_cursor: Annotated[int, msgspec.Meta(ge=0, lt=10**18)] | None = None
    queued_actions: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    online_since: datetime | None = None


class OpenSession(Message, frozen=True, tag="openSession"):
    """The device made its first authenticated call with this session: record and store it."""

    session_id: Identifier
    operator_id: Identifier
    role: str
    property_ids: list[str]
    jkt: str


class CloseSession(Message, frozen=True, tag="closeSession"):
    """Sign-out or revocation: every instance rejects the session from now on."""

    session_id: Identifier
    reason: CloseReason


class RefreshSession(Message, frozen=True, tag="refreshSession"):
    """The session reference in Redis changed: reload it."""


class AttachStream(Message, frozen=True, tag="attachStream"):
    """A live stream of session ``session_id`` wants to be the device's one stream (API
    contract §6): answered with a :class:`~actors.ports.StreamGrant` or :class:`StreamRefused`."""

    token: Identifier
    node: Identifier
    session_id: Identifier
    after: str | None = None  # Last-Event-ID, a well-formed feed id


class DetachStream(Message, frozen=True, tag="detachStream"):
    """The stream ``token`` ended."""

    token: Identifier


DeviceMessage = (
    RecordHeartbeat
    | OpenSession
    | CloseSession
    | RefreshSession
    | AttachStream
    | DetachStream
    | GetState
    | DomainEvent
    | RecordMutationAttempt
    | RecordMutationOutcome
    | AdvanceCursor
    | CompleteHandshake
    | RecordQueueHint
)


class StreamRefused(msgspec.Struct, frozen=True, kw_only=True):
    """The stream may not open: its session is closed (``retry_after`` 0), or the device opens
    streams in a loop (retry after ``retry_after`` s)."""

    reason: str
    retry_after: int = 0


class HeartbeatAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    heartbeat_count: int
    duplicate: bool
    sampled: bool


class SessionAck(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    session_id: str
    changed: bool


# --- events and state ----------------------------------------------------------------------


class DeviceState(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    tenant: str
    device_id: str
    version: int = 0
    session_id: str | None = None  # the open session, if any
    operator_id: str | None = None
    closed_sessions: tuple[str, ...] = ()
    heartbeat_count: int = 0
    last_seen_at: datetime | None = None
    app_version: str | None = None
    session_ref: str | None = None  # what the session tier says (shared by instances)
    sync_cursor: int | None = None
    uncached_cursor: CachedCursor | None = None  # the cache tier missed this copy: retried


_opened = msgspec.json.Decoder(SessionOpened)
_closed = msgspec.json.Decoder(SessionClosed)


def apply_device_event(state: DeviceState, subject: str, payload: bytes) -> DeviceState:
    """Pure fold of one ledger event; heartbeat telemetry and unknown subjects are skipped."""
    if subject == SESSION_OPENED:
        opened = _opened.decode(payload)
        return msgspec.structs.replace(
            state, session_id=opened.session_id, operator_id=opened.operator_id
        )
    if subject == SESSION_CLOSED:
        closed = _closed.decode(payload)
        recent = (*state.closed_sessions, closed.session_id)[-RECENT_SESSIONS:]
        current = None if state.session_id == closed.session_id else state.session_id
        return msgspec.structs.replace(state, session_id=current, closed_sessions=recent)
    return state


def decide_open(state: DeviceState, command: OpenSession) -> list[Pending]:
    if command.session_id == state.session_id or command.session_id in state.closed_sessions:
        return []
    event = SessionOpened(
        session_id=command.session_id,
        operator_id=command.operator_id,
        role=command.role,
        property_ids=command.property_ids,
        at=datetime.now(UTC),
    )
    return [Pending(SESSION_OPENED, event)]


def decide_close(state: DeviceState, command: CloseSession) -> list[Pending]:
    if command.session_id in state.closed_sessions:
        return []
    event = SessionClosed(
        session_id=command.session_id, reason=command.reason, at=datetime.now(UTC)
    )
    return [Pending(SESSION_CLOSED, event)]


# --- revocations (iam) -----------------------------------------------------------------------


class _RevocationFields(msgspec.Struct, frozen=True, rename="camel"):
    """The fields of a revocation's data, decoded leniently: each is checked on its own, so
    one malformed field never hides the others (a revocation must not fail open)."""

    tenant_id: object = None
    session_id: object = None
    session_ids: object = None
    operator_id: object = None
    device_id: object = None
    device_ids: object = None
    property_id: object = None
    reason: object = None


_revocation_fields = msgspec.json.Decoder(_RevocationFields)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


def _identifier(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= 128 and _IDENTIFIER.fullmatch(value):
        return value
    return None


class Revocation(msgspec.Struct, frozen=True, kw_only=True):
    """What ``iam.session.revoked.v1`` / ``iam.user.disabled.v1`` ask of this service.

    ``session_ids`` are the well-formed session ids the event names (``sessionId``;
    ``sessionIds`` for ``user.disabled``); ``malformed`` counts the ones that were not. The
    other fields are hints, ``None`` when missing or malformed.
    """

    subject: str
    foreign: bool  # the data names another tenant than the one it was delivered for
    session_ids: tuple[str, ...]
    malformed: int
    disabled_operator: str | None  # user.disabled: the operator whose sessions all end
    device_ids: tuple[str, ...]  # the devices iam names (a hint: the session tier knows better)
    property_id: str | None
    reason: str


def read_revocation(subject: str, tenant: str, data: bytes) -> Revocation | None:
    """The revocation an event delivered for ``tenant`` asks for, or ``None`` when ``subject``
    is not a revocation. Never raises: unreadable data is a revocation of nothing."""
    if subject not in REVOCATIONS:
        return None
    try:
        fields = _revocation_fields.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        fields = _RevocationFields()
    if subject == USER_DISABLED:
        named = fields.session_ids if isinstance(fields.session_ids, list) else []
        devices = fields.device_ids if isinstance(fields.device_ids, list) else []
        reason = "user_disabled"
    else:
        named = [] if fields.session_id is None else [fields.session_id]
        devices = [fields.device_id]
        given = fields.reason
        reason = given if isinstance(given, str) and 0 < len(given) <= 40 else "revoked"
    session_ids = tuple(dict.fromkeys(s for s in map(_identifier, named) if s is not None))
    return Revocation(
        subject=subject,
        foreign=fields.tenant_id is not None and fields.tenant_id != tenant,
        session_ids=session_ids,
        malformed=len(named) - sum(1 for s in named if _identifier(s) is not None),
        disabled_operator=_identifier(fields.operator_id) if subject == USER_DISABLED else None,
        device_ids=tuple(dict.fromkeys(d for d in map(_identifier, devices) if d is not None)),
        property_id=_identifier(fields.property_id),
        reason=reason,
    )


# --- the actor -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceDeps:
    log: EventLog
    sessions: SessionTier
    cursors: SyncCursors
    status: DeviceStatus
    feed: DeviceFeed
    # A fixed share, or a function read at each heartbeat: the edge passes its runtime flag
    # (edge/flags.py, FAILURE_MODES F-40), so operators can lower it without a restart.
    heartbeat_sample_rate: float | Callable[[], float] = 0.05

    def sample_rate(self) -> float:
        rate = self.heartbeat_sample_rate
        return rate() if callable(rate) else rate


class DeviceActor(EventSourced[DeviceState]):
    def __init__(self, address: ActorAddress, deps: DeviceDeps) -> None:
        self._deps = deps
        super().__init__(address, deps.log)

    def initial_state(self) -> DeviceState:
        return DeviceState(tenant=self.address.tenant, device_id=self.address.id)

    def apply(self, state: DeviceState, subject: str, payload: bytes) -> DeviceState:
        return apply_device_event(state, subject, payload)

    async def load_volatile(self) -> None:
        """Reload what lives outside the ledger: status and sync cursor (Postgres, the
        cursor's authority; the cache tier only copies it), session ref."""
        tenant, device = self.address.tenant, self.address.id
        status = await self._deps.status.get(tenant, device)
        session_ref = await self._deps.sessions.current(tenant, device)
        self.state = msgspec.structs.replace(
            self.state,
            session_ref=session_ref,
            sync_cursor=status.cursor_version if status else None,
            heartbeat_count=status.heartbeat_count if status else 0,
            last_seen_at=status.last_seen_at if status else None,
            app_version=status.app_version if status else None,
        )

    async def handle(self, message: Any) -> Any:
        if isinstance(message, RecordHeartbeat):
            return await self._heartbeat(message)
        if isinstance(message, OpenSession):
            return await self._open(message)
        if isinstance(message, CloseSession):
            return await self._close(message.session_id, message.reason)
        if isinstance(message, AttachStream):
            return await self._attach(message)
        if isinstance(message, DetachStream):
            await self._deps.feed.release(self.address.tenant, self.address.id, message.token)
            return Handled(acted=True)
        if isinstance(message, GetState):
            return self.state
        if isinstance(message, RefreshSession):
            await self.load_volatile()
            return self.state
        if isinstance(message, DomainEvent):
            return await self._domain_event(message)
        if isinstance(message, MUTATION_MESSAGES):  # actors/mutations.py: the audit rows
            closed = self.state.closed_sessions
            return await _record_mutation(self._deps.log, self.address, closed, message)
        if isinstance(message, SYNC_MESSAGES):  # actors/device_sync.py
            return await self._sync(message)
        raise CommandRejected(self.address, f"unsupported message {type(message).__name__}")

    async def _heartbeat(self, command: RecordHeartbeat) -> HeartbeatAck:
        """Telemetry first (if this command is sampled), then DeviceSyncStatus.

        Both are idempotent per command id: the telemetry's event id and the sampling decision
        derive from it, and the status row remembers recent command ids. A retry after a crash
        between the two steps therefore completes the heartbeat without recording it twice.
        """
        at = datetime.now(UTC)
        event_id = uuid.uuid5(
            HEARTBEAT_IDS, f"{self.address.tenant}/{self.address.id}/{command.command_id}"
        )
        sampled = event_id.int / 2**128 < self._deps.sample_rate()
        if sampled:
            telemetry = HeartbeatRecorded(
                command_id=command.command_id,
                app_version=command.app_version,
                at=at,
                operator_id=command.operator_id,
                sync_cursor=None if command.sync_cursor is None else str(command.sync_cursor),
                queued_actions=command.queued_actions,
                online_since=command.online_since,
            )
            await self.execute(
                lambda _: [Pending(HEARTBEAT, telemetry, event_id)],
                device_id=self.address.id,
                operator_id=command.operator_id,
            )
        outcome = await self._deps.status.record_heartbeat(
            self.address.tenant,
            self.address.id,
            at=at,
            app_version=command.app_version,
            operator_id=command.operator_id,
            command_id=command.command_id,
            queued_actions=command.queued_actions,
            online_since=command.online_since,
        )
        status = outcome.status
        self.state = msgspec.structs.replace(
            self.state,
            heartbeat_count=status.heartbeat_count,
            last_seen_at=status.last_seen_at,
            app_version=status.app_version,
        )
        await self._heartbeat_cursor(command, status)
        return HeartbeatAck(
            heartbeat_count=status.heartbeat_count, duplicate=outcome.duplicate, sampled=sampled
        )

    # --- sync (actors/device_sync.py) ----------------------------------------------------------

    async def _sync(
        self, message: AdvanceCursor | CompleteHandshake | RecordQueueHint
    ) -> CursorAck:
        await self._recache()
        if isinstance(message, AdvanceCursor):
            return await self._advance(message)
        if isinstance(message, CompleteHandshake):
            return await self._complete_handshake(message)
        status = await self._deps.status.record_queue_hint(
            self.address.tenant,
            self.address.id,
            queued_actions=message.queued_actions,
            oldest_queued_at=message.oldest_queued_at,
            at=datetime.now(UTC),
            operator_id=message.operator_id,
        )
        return CursorAck(status=status, changed=False)

    async def _heartbeat_cursor(self, command: RecordHeartbeat, status: DeviceSyncStatus) -> None:
        """The heartbeat's ``syncCursor`` moves the cursor when it is newer (a retried
        heartbeat too: an advance is idempotent)."""
        await self._recache()
        reported, held = command.sync_cursor, status.cursor_version
        if reported is None or (held is not None and reported <= held):
            return
        await self._advance(
            AdvanceCursor(cursor=reported, source="heartbeat", operator_id=command.operator_id)
        )

    async def _advance(self, command: AdvanceCursor) -> CursorAck:
        """Postgres first (one conditional write: the cursor never moves backwards, whatever
        runs concurrently), then the new revision's ledger event, then the cache tier's copy.
        A crash after the first step loses only that revision's event."""
        tenant, device = self.address.tenant, self.address.id
        move = await self._deps.status.advance_cursor(
            tenant,
            device,
            command.cursor,
            at=datetime.now(UTC),
            source=command.source,
            operator_id=command.operator_id,
        )
        if move.changed:
            pending = advanced_event(tenant, device, move.status, command.operator_id)
            await self.execute(
                lambda _: [pending], device_id=device, operator_id=command.operator_id
            )
        await self._cache(move.status)
        return CursorAck(status=move.status, changed=move.changed)

    async def _complete_handshake(self, command: CompleteHandshake) -> CursorAck:
        """Reset the cursor to sync-service's authoritative one when it differs from what the
        handshake read (a compare-and-set on that read's revision), then record the handshake."""
        tenant, device = self.address.tenant, self.address.id
        at = datetime.now(UTC)
        move = None
        if command.cursor is not None and command.cursor != command.cached:
            move = await self._deps.status.reset_cursor(
                tenant,
                device,
                command.cursor,
                expected_revision=command.cached_revision,
                at=at,
                operator_id=command.operator_id,
            )
        reset = move is not None and move.changed and command.cached is not None  # not a fill
        pending = handshake_event(tenant, device, command, reset, at)
        await self.execute(lambda _: [pending], device_id=device, operator_id=command.operator_id)
        if move is None:  # nothing written: the cursor and its copy are as they were
            return CursorAck(status=None, changed=False)
        await self._cache(move.status)
        return CursorAck(status=move.status, changed=reset)

    async def _cache(self, status: DeviceSyncStatus) -> None:
        """Copy the cursor to the cache tier (best effort: it is the fallback for a Postgres
        outage). A copy the tier missed is offered again with the device's next message."""
        self.state = msgspec.structs.replace(self.state, sync_cursor=status.cursor_version)
        cached = CachedCursor.of(status)
        if cached is not None:
            self.state = msgspec.structs.replace(self.state, uncached_cursor=cached)
            await self._recache()

    async def _recache(self) -> None:
        cached = self.state.uncached_cursor
        if cached is None:
            return
        try:
            await self._deps.cursors.put(self.address.tenant, self.address.id, cached)
        except DependencyDown as exc:
            log.warning(
                "sync cursor not copied to the cache tier",
                extra={"actor": str(self.address), "error": str(exc)},
            )
            return
        self.state = msgspec.structs.replace(self.state, uncached_cursor=None)

    async def _open(self, command: OpenSession) -> SessionAck:
        changed = await self.execute(
            lambda state: decide_open(state, command),
            device_id=self.address.id,
            operator_id=command.operator_id,
        )
        if changed:
            await self._deps.sessions.open(
                BackofficeSession(
                    session_id=command.session_id,
                    tenant=self.address.tenant,
                    operator_id=command.operator_id,
                    device_id=self.address.id,
                    role=command.role,
                    property_ids=tuple(command.property_ids),
                    jkt=command.jkt,
                    opened_at=datetime.now(UTC),
                )
            )
            self.state = msgspec.structs.replace(self.state, session_ref=command.session_id)
        return SessionAck(session_id=command.session_id, changed=changed)

    async def _close(self, session_id: str, reason: str) -> SessionAck:
        """Revoke everywhere first (Redis marker), then record; tell the device's streams.

        The streams hear it when this call recorded the close, and also when the session was
        this device's own in this process (another instance may have recorded it first, but
        the desktop's stream may be connected here)."""
        held = session_id in (self.state.session_id, self.state.session_ref)
        await self._deps.sessions.close(self.address.tenant, session_id, self.address.id)
        changed = await self.execute(
            lambda state: decide_close(state, CloseSession(session_id=session_id, reason=reason)),
            device_id=self.address.id,
            operator_id=self.state.operator_id,
        )
        if self.state.session_ref == session_id:
            self.state = msgspec.structs.replace(self.state, session_ref=None)
        if changed or held or session_id in self.state.closed_sessions:
            # Delivery is idempotent: a retried close delivers what a feed outage kept back.
            await deliver(
                self._deps.log,
                self._deps.feed,
                self.address.tenant,
                [self.address.id],
                _ended(session_id, reason),
                stream=f"device-feed:{self.address.id}",
                operator_id=self.state.operator_id,
            )
        return SessionAck(session_id=session_id, changed=changed)

    async def _attach(self, command: AttachStream) -> StreamGrant | StreamRefused:
        """Claim the device's one stream for a session that is still open here (the auth
        chain checked the session tier; a close recorded since then wins)."""
        await self.catch_up()  # another instance may have closed it
        if command.session_id in self.state.closed_sessions:
            return StreamRefused(reason="session_closed")
        claim = StreamClaim(
            token=command.token,
            node=command.node,
            session_id=command.session_id,
            after=command.after,
        )
        try:
            return await self._deps.feed.claim(self.address.tenant, self.address.id, claim)
        except StreamsThrottled as exc:
            return StreamRefused(reason="too_many_streams", retry_after=exc.retry_after)

    async def _domain_event(self, event: DomainEvent) -> Handled:
        """A revocation reaching this device (the router already marked its sessions revoked
        and told each session's holder to close it): close the device's current session if
        the event names it, or — ``user.disabled`` — if it is the disabled operator's. Never
        another operator's: on a shared desk the device's current session may be anyone's."""
        revocation = read_revocation(event.subject, self.address.tenant, event.data)
        if revocation is None or revocation.foreign:
            return Handled(acted=False)
        await self.catch_up()  # another instance may have opened or closed sessions here
        state = self.state
        targets: list[str] = []
        for sid in (state.session_id, state.session_ref):
            if sid is None or sid in targets:
                continue
            owned = (
                sid == state.session_id
                and revocation.disabled_operator is not None
                and state.operator_id == revocation.disabled_operator
            )
            if owned or sid in revocation.session_ids:
                targets.append(sid)
        acted = False
        for sid in targets:
            acted = (await self._close(sid, revocation.reason)).changed or acted
        return Handled(acted=acted)


def _ended(session_id: str, reason: str) -> FeedItem:
    """What the session's streams hear when it ends: a force-logout, unless the device signed
    out itself, in which case they just close. Scoped to the session: a newer session's stream
    on the same device hears nothing."""
    key = f"session-closed:{session_id}"
    if reason == "sign_out":
        return FeedItem(key=key, event=END_OF_STREAM, data={}, session_id=session_id)
    data = {"kind": "force_logout", "reason": reason}
    return FeedItem(key=key, event="session", data=data, session_id=session_id)


def device_kind(deps: DeviceDeps) -> ActorKind:
    return ActorKind(
        name=KIND,
        messages=DeviceMessage,
        accepts=(
            RecordHeartbeat,
            OpenSession,
            CloseSession,
            RefreshSession,
            AttachStream,
            DetachStream,
            GetState,
            DomainEvent,
            *MUTATION_MESSAGES,
            *SYNC_MESSAGES,
        ),
        factory=lambda address: DeviceActor(address, deps),
    )
