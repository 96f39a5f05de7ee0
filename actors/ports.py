"""What actors need from the ledger, as a protocol: actors depend on this, not on
``ledger.appendlog.Ledger``, so the runtime can be exercised against any append-only log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.model import AppendResult, NewEvent, RecordedEvent


class EventLog(Protocol):
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
