"""``replay``: a tenant's audit trail as a table or JSON lines, with a progress bar on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import IO

import msgspec

from ledger.audit import count_trail, trail
from ledger.database import Database
from ledger.model import RecordedEvent

LONG_REPLAY = 10_000  # rows; beyond this the bar shows even when stdout is not a terminal
COLUMNS = (
    ("position", 10),
    ("recorded_at", 24),
    ("stream", 28),
    ("version", 7),
    ("subject", 52),
    ("operator", 16),
    ("device", 16),
    ("request id", 0),
)


class Progress:
    """A one-line bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, out: IO[str]) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._out = out
        self._drawn = 0.0

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done >= self.total:
            self._drawn = now
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            self._out.write(f"\r[{bar:<30}] {share:4.0%} {self.done}/{self.total} rows")
            self._out.flush()

    def close(self) -> None:
        self._out.write("\n")
        self._out.flush()


def _cell(value: str, width: int) -> str:
    if not width:
        return value
    return value if len(value) <= width else value[: width - 1] + "…"


def table_line(values: list[str]) -> str:
    return "  ".join(
        _cell(v, w).ljust(w) if w else v for v, (_, w) in zip(values, COLUMNS, strict=True)
    ).rstrip()


def table_row(event: RecordedEvent) -> str:
    return table_line(
        [
            str(event.position),
            _iso(event.recorded_at),
            event.stream,
            str(event.version),
            event.subject,
            event.operator_id or "-",
            event.device_id or "-",
            event.request_id or "-",
        ]
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TrailLine(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    position: int
    event_id: str
    tenant_id: str
    stream: str
    version: int
    subject: str
    operator_id: str | None
    device_id: str | None
    request_id: str | None
    occurred_at: str
    recorded_at: str
    payload: msgspec.Raw


_json = msgspec.json.Encoder()


def json_line(event: RecordedEvent) -> str:
    line = TrailLine(
        position=event.position,
        event_id=str(event.event_id),
        tenant_id=event.tenant,
        stream=event.stream,
        version=event.version,
        subject=event.subject,
        operator_id=event.operator_id,
        device_id=event.device_id,
        request_id=event.request_id,
        occurred_at=_iso(event.occurred_at),
        recorded_at=_iso(event.recorded_at),
        payload=event.payload,
    )
    return _json.encode(line).decode()


async def replay(db: Database, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    total = await count_trail(db, args.tenant, args.stream, args.since, args.until)
    show = args.progress == "always" or (
        args.progress == "auto" and (out.isatty() or total > LONG_REPLAY)
    )
    progress = Progress(total, sys.stderr) if show and total else None
    if not args.json:
        out.write(table_line([name for name, _ in COLUMNS]) + "\n")
    async for page in trail(db, args.tenant, args.stream, args.since, args.until):
        render = json_line if args.json else table_row
        out.write("".join(render(e) + "\n" for e in page))
        if progress:
            progress.advance(len(page))
    if progress:
        progress.close()
    if not args.json:
        print(f"{total} events for tenant {args.tenant}", file=sys.stderr)
    return 0
