"""Wire schemas of the sync routes: the device's cursor, the sync handshake and the offline-queue
hint (API contract §9).

**The cursor.** sync-service counts a device's progress as ``cursorVersion``, a non-negative
integer that only grows (its "latest change" version the device has pulled). On this API the
cursor is that integer written as a canonical decimal string (``"0"``, ``"4200"``; no sign, no
leading zeros, at most 18 digits so it fits a Postgres ``bigint``): ids and versions are strings
on the wire (contract §1), and a JavaScript client would lose digits of a large JSON number.
Cursors compare by their integer value (for canonical strings that equals comparing length,
then characters). "Never moves backwards" is defined by that order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.identifiers import Identifier
from schemas.sync_registry import SCOPES, SyncScope

MAX_CURSOR_DIGITS = 18
CURSOR_PATTERN = rf"^(0|[1-9][0-9]{{0,{MAX_CURSOR_DIGITS - 1}}})$"
MAX_QUEUED_ACTIONS = 1_000_000

Cursor = Annotated[
    str,
    msgspec.Meta(
        pattern=CURSOR_PATTERN,
        description="sync-service's cursor version as a canonical decimal string; compared as "
        "an integer",
    ),
]
QueuedActions = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUEUED_ACTIONS)]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
CursorSource = Literal["device", "heartbeat", "sync_service"]
Scopes = Annotated[list[SyncScope], msgspec.Meta(min_length=1, max_length=len(SCOPES))]


def cursor_value(cursor: str) -> int:
    """The integer a (validated) :data:`Cursor` stands for."""
    return int(cursor)


class CursorQuery(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """``GET /sync/cursor?deviceId``."""

    device_id: Identifier


class AdvanceCursorBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """``POST /sync/cursor``: the device pulled up to ``cursor``."""

    device_id: Identifier
    cursor: Cursor


class SyncCursor(msgspec.Struct, kw_only=True, rename="camel"):
    """The device's cursor as the BFF holds it (``null`` before its first handshake or
    advance). ``source`` says who set it last: the device (``POST /sync/cursor``), its
    heartbeat, or sync-service (reset on a handshake when the two differed)."""

    device_id: str
    cursor: str | None
    updated_at: datetime | None = None
    source: CursorSource | None = None


class CursorAdvanced(msgspec.Struct, kw_only=True, rename="camel"):
    """Answer of ``POST /sync/cursor``: the cursor now (never less than before). ``advanced``
    is false when the cursor sent was not newer: the cursor stays where it was."""

    device_id: str
    cursor: str
    advanced: bool
    updated_at: datetime | None


class HandshakeBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """``POST /sync/handshake``: ``scopes`` (default: every scope of the sync registry) name
    the replicated aggregates the desktop wants, each once."""

    device_id: Identifier
    scopes: Scopes | None = None


class Handshake(msgspec.Struct, kw_only=True, rename="camel"):
    """Answer of ``POST /sync/handshake``: the desktop pulls and pushes bulk data at ``syncUrl``
    with ``syncSessionToken`` (valid ``expiresIn`` seconds) — the BFF never proxies it — from
    ``cursor``, sync-service's authoritative cursor of this device. ``cursorReset`` says the
    BFF's cached cursor differed and was reset to it (FAILURE_MODES F-35)."""

    sync_session_token: str
    sync_url: str
    expires_in: int
    cursor: str
    mode: Literal["delta", "full"]
    scopes: list[SyncScope]
    server_cursor: str
    cursor_reset: bool


class QueueHintBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """``POST /offline-queue/hint``: how many actions the desktop has queued locally and since
    when (informational: the desktop owns the queue)."""

    device_id: Identifier
    queued_actions: QueuedActions
    oldest_queued_at: Instant | None = None


class QueueHint(msgspec.Struct, kw_only=True, rename="camel"):
    """The ``OfflineActionQueueHint`` the BFF holds for the device."""

    device_id: str
    queued_actions: int
    oldest_queued_at: datetime | None
    recorded_at: datetime
