"""Ledger rows: what an actor appends and what readers get back.

The ledger is one append-only table; it is the activity/audit log and the outbox at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

Subject = Annotated[
    str, msgspec.Meta(pattern=r"^melmastoon\.[a-z0-9_.]+\.v[0-9]+$", max_length=200)
]


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event to append. ``expected_version`` is the stream version the appender last saw
    (optimistic concurrency); ``None`` appends at the end without a check."""

    tenant: str
    stream: str  # "<actor kind>:<id>", e.g. "device:dev-123" or "property:prop-demo-1"
    subject: Subject  # melmastoon.bff.backoffice.<...>.v1
    payload: msgspec.Raw | dict[str, object]
    event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    expected_version: int | None = None
    operator_id: str | None = None
    device_id: str | None = None
    request_id: str | None = None
    occurred_at: datetime | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A durable ledger row."""

    position: int  # global, gap-free, in commit order
    event_id: uuid.UUID
    tenant: str
    stream: str
    version: int  # dense per stream, starting at 1
    subject: str
    payload: msgspec.Raw
    operator_id: str | None
    device_id: str | None
    request_id: str | None
    occurred_at: datetime
    recorded_at: datetime


class AppendResult(msgspec.Struct, frozen=True):
    position: int
    version: int


class VersionConflict(Exception):
    """The stream moved past ``expected_version``: the appender's view is stale."""
