"""The DeviceActor's sync messages: cursor advances, the handshake's record and reset, and the
offline-queue hint (issue #13 item 5), with the ledger events they decide.

``DeviceSyncStatus`` (Postgres, behind the ``DeviceStatus`` port) is the BFF's cursor cache and
its authority: a cursor write is one conditional statement there, so concurrent advances from
several instances can never move it backwards. The ledger records what changed —
``sync.cursor_advanced.v1`` once per cursor revision, ``sync.handshake_completed.v1`` once per
handshake — and the cache tier (``SyncCursors``) gets a copy tagged with the revision.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from actors.eventsourced import Pending
from actors.messages import CommandId, Message
from ledger.device_status import DeviceSyncStatus
from schemas.actor_events import (
    CURSOR_ADVANCED,
    HANDSHAKE_COMPLETED,
    CursorAdvanced,
    HandshakeCompleted,
)

SYNC_IDS = uuid.UUID("2b0f6a4e-8d1c-4e57-9a63-5c7d1e0f3b92")  # namespace of sync event ids
CursorValue = Annotated[int, msgspec.Meta(ge=0, lt=10**18)]
Scope = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AdvanceCursor(Message, frozen=True, tag="advanceCursor"):
    """The device pulled up to ``cursor`` (or its heartbeat says so): move the cursor forward;
    an older one leaves it where it is."""

    cursor: CursorValue
    source: Literal["device", "heartbeat"] = "device"
    operator_id: str | None = None


class CompleteHandshake(Message, frozen=True, tag="completeHandshake"):
    """sync-service granted a sync session. ``cursor`` is its authoritative cursor (``None``
    when it could not be read); when it differs from ``cached`` — what the BFF held at
    ``cached_revision`` when the handshake began — the cache is reset to it (F-35), unless the
    cursor moved since."""

    command_id: CommandId
    cursor: CursorValue | None
    cached: CursorValue | None
    cached_revision: Annotated[int, msgspec.Meta(ge=0)]
    mode: Annotated[str, msgspec.Meta(max_length=16)]
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=32)]
    operator_id: str | None = None


class RecordQueueHint(Message, frozen=True, tag="recordQueueHint"):
    """The desktop's ``OfflineActionQueueHint`` (informational)."""

    queued_actions: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    oldest_queued_at: datetime | None = None
    operator_id: str | None = None


SYNC_MESSAGES = (AdvanceCursor, CompleteHandshake, RecordQueueHint)


class CursorAck(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to :class:`AdvanceCursor` and :class:`CompleteHandshake`: the device's status
    after it, and whether this message changed the cursor."""

    status: DeviceSyncStatus | None  # None: a device the BFF knows nothing about yet
    changed: bool


def advanced_event(
    tenant: str, device_id: str, status: DeviceSyncStatus, operator_id: str | None
) -> Pending:
    """``sync.cursor_advanced.v1`` for the revision ``status`` is at (its id derives from the
    revision: one event per change, whichever instance records it)."""
    assert status.cursor_version is not None and status.cursor_at is not None
    previous = status.cursor_previous
    event = CursorAdvanced(
        cursor=str(status.cursor_version),
        revision=status.cursor_revision,
        source=status.cursor_source or "device",
        at=status.cursor_at,
        previous=None if previous is None else str(previous),
        operator_id=operator_id,
    )
    key = f"{tenant}/{device_id}/cursor/{status.cursor_revision}"
    return Pending(CURSOR_ADVANCED, event, uuid.uuid5(SYNC_IDS, key))


def handshake_event(
    tenant: str, device_id: str, command: CompleteHandshake, reset: bool, at: datetime
) -> Pending:
    """``sync.handshake_completed.v1`` (its id derives from the command: recorded once)."""
    event = HandshakeCompleted(
        cursor=None if command.cursor is None else str(command.cursor),
        cached_cursor=None if command.cached is None else str(command.cached),
        cursor_reset=reset,
        mode=command.mode,
        scopes=list(command.scopes),
        at=at,
        operator_id=command.operator_id,
    )
    key = f"{tenant}/{device_id}/handshake/{command.command_id}"
    return Pending(HANDSHAKE_COMPLETED, event, uuid.uuid5(SYNC_IDS, key))
