"""The ledger store: group-committed appends, gap-free reads in commit order.

One append-only Postgres table (``ledger``) is the activity/audit log and the transactional
outbox. Design:

**Group commit.** ``append()`` never talks to Postgres itself: it queues a request and waits.
One writer task per process (:meth:`Ledger.run`) takes every request that is waiting (up to
``max_batch`` events) and writes them with a single call of the SQL function ``ledger_append``
— one statement, one transaction, one WAL flush for the whole batch. While that batch commits,
new requests queue up and form the next batch, so batches grow with load and a lone appender
still pays just one round trip. A caller gets its result only after the commit returned, so an
acknowledged append is durable.

**Gap-free positions in commit order (the "sequence numbers commit out of order" problem).**
With a ``bigserial`` position, transaction A can take 100, B take 101 and commit first; a
reader polling ``position > last`` then sees 101, moves its cursor past 100 and never reads A's
row. Here positions are not a sequence: ``ledger_append`` first locks the single row of
``ledger_head`` (``SELECT … FOR UPDATE``) and hands out ``head + 1, head + 2, …`` under that
lock, then writes the new head. The row lock is held until the transaction ends and Postgres
releases locks only *after* the commit is visible, so:

* appenders (the batches of every BFF instance) are serialised: the next one's positions are
  all greater, and it cannot commit before the previous one is visible;
* a rolled-back or killed append rolls back its head update too, so no position is ever lost:
  positions are dense (1, 2, 3, …) with no holes at all;
* any snapshot that shows position *p* also shows every position below *p*. A reader polling
  ``position > last ORDER BY position`` therefore can never skip a row, and ``./ops/ledger
  verify`` can check that positions have no gaps.

The price is one serialisation point per batch (not per event): the lock is held only for the
server-side execution of one statement plus its commit, never across a network round trip.
(Alternatives considered: ``LOCK TABLE … EXCLUSIVE`` — same effect, blocks more; a reader-side
``xmin`` barrier — keeps writers parallel but makes every reader subtle; gap timeouts — unsafe.)

**Exactly once under crashes.** Every event carries a UUID ``event_id`` (unique). If the writer
loses its connection or times out mid-commit, the outcome is unknown: it retries the same batch
on a new connection, and ``ledger_append`` returns the original position/version for events
already recorded instead of writing them again. A caller whose deadline passes gets
:class:`LedgerUnavailable` ("outcome unknown"); re-appending the same ``NewEvent`` objects is
safe for the same reason.

**Optimistic concurrency.** ``ledger_streams`` holds each stream's version. A request whose
``expected_version`` differs from the stream's version before the request fails with
:class:`~ledger.model.VersionConflict`; only that request fails, the rest of the batch commits.
A request's events are all-or-nothing.

**Retention** (``ledger/retention.py``) deletes a prefix of positions: rows older than the
retention period *and* already published by the relay, in small batches, each in its own short
transaction. Appends only touch the head of the table, so it is safe to run while appending,
and what remains is still a dense range of positions.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import trio

from ledger.database import Connection, Database, DatabaseUnavailable, Record
from ledger.instruments import LedgerInstruments
from ledger.model import AppendResult, NewEvent, RecordedEvent, VersionConflict

log = logging.getLogger("bff.ledger")

APPEND_SQL = (
    "SELECT out_position, out_version, out_status"
    " FROM ledger_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)
_COLUMNS = (
    "position, event_id, tenant, stream, version, subject, payload::text AS payload,"
    " operator_id, device_id, request_id, occurred_at, recorded_at"
)
# The column list is a constant; values always travel as parameters.
_READ_ALL = f"SELECT {_COLUMNS} FROM ledger WHERE position > $1 ORDER BY position LIMIT $2"  # noqa: S608
_READ_ALL_TENANT = (
    f"SELECT {_COLUMNS} FROM ledger"  # noqa: S608
    " WHERE tenant = $3 AND position > $1 ORDER BY position LIMIT $2"
)
_READ_STREAM = (
    f"SELECT {_COLUMNS} FROM ledger"  # noqa: S608
    " WHERE tenant = $1 AND stream = $2 AND version > $3 ORDER BY version LIMIT $4"
)
_QUEUE_SIZE = 10_000
_OK, _DUPLICATE, _CONFLICT, _ID_CLASH = 0, 1, 2, 3

# Errors after which the batch outcome is unknown and the writer retries on a new connection.
RETRYABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    trio.TooSlowError,
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. backend killed while idle: protocol stuck mid-error
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated backend, cancel
    asyncpg.exceptions.InsufficientResourcesError,
)


class LedgerUnavailable(DatabaseUnavailable):
    """Postgres is down or the append missed its deadline. The outcome may be unknown: re-append
    the same events (same ``event_id``) to get their positions without writing them twice."""


class DuplicateEventId(ValueError):
    """An event id is already recorded for another stream: the caller reused an id."""


class LedgerRejected(ValueError):
    """Postgres refused the events themselves (e.g. a NUL character in a string)."""


@dataclass(eq=False)
class _Request:
    events: list[NewEvent]
    payloads: list[str]
    deadline: float
    done: trio.Event = field(default_factory=trio.Event)
    result: list[AppendResult] | Exception | None = None
    abandoned: bool = False

    def finish(self, result: list[AppendResult] | Exception) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()


class Ledger:
    """The append-only ledger of one database; :meth:`run` is its group-commit writer."""

    def __init__(
        self,
        db: Database,
        *,
        metrics: LedgerInstruments | None = None,
        max_batch: int = 500,
        call_timeout: float = 10.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._db = db
        self._metrics = metrics
        self._max_batch = max_batch
        self._call_timeout = call_timeout
        self._send, self._recv = trio.open_memory_channel[_Request](_QUEUE_SIZE)
        self._carry: deque[_Request] = deque()
        self._last_position = 0
        self._appended = trio.Event()
        self.batches = 0  # committed batches (tests and the benchmark read it)

    # ----------------------------------------------------------------- appending

    async def append(
        self, events: Sequence[NewEvent], *, timeout: float = 5.0
    ) -> list[AppendResult]:
        """Append ``events`` atomically; durable on return (one result per event, same order)."""
        if not events:
            return []
        request = _Request(list(events), [payload_text(e) for e in events], 0.0)
        request.deadline = trio.current_time() + timeout
        try:
            with trio.move_on_at(request.deadline):
                await self._send.send(request)
                await request.done.wait()
        finally:
            if not request.done.is_set():
                request.abandoned = True
        result = request.result
        if result is None:
            self._count_error("timeout")
            raise LedgerUnavailable(
                f"no durable append within {timeout}s (outcome unknown; re-append the same"
                " events to resolve it)"
            )
        if isinstance(result, Exception):
            raise result
        return result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The group-commit writer: runs until cancelled; retries a batch on connection loss."""
        task_status.started()
        failures = 0
        try:
            while True:
                try:
                    async with self._db.connection(timeout=self._call_timeout) as conn:
                        failures = 0
                        while True:
                            batch = await self._collect()
                            await self._commit(conn, batch)
                except RETRYABLE_DB_ERRORS as exc:
                    failures += 1
                    self._count_error("connection")
                    if failures == 1 or failures % 50 == 0:
                        log.warning(
                            "ledger writer lost Postgres; retrying",
                            extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                        )
                    await trio.sleep(min(0.02 * 2 ** min(failures, 6), 1.0))
        finally:
            self._fail_waiting("ledger writer stopped")

    async def _collect(self) -> list[_Request]:
        """The next batch: requests carried over from a failed attempt, then all that wait."""
        batch: list[_Request] = []
        ids: set[uuid.UUID] = set()
        size = 0
        if not any(not r.abandoned for r in self._carry):
            self._carry.append(await self._recv.receive())
            await trio.lowlevel.checkpoint()  # let appenders that are ready queue up first
        while True:
            if self._carry:
                request = self._carry.popleft()
            else:
                try:
                    request = self._recv.receive_nowait()
                except trio.WouldBlock:
                    break
            if request.abandoned or request.done.is_set():
                continue
            request_ids = {e.event_id for e in request.events}
            too_big = batch and size + len(request.events) > self._max_batch
            if too_big or not ids.isdisjoint(request_ids):
                self._carry.appendleft(request)  # next batch; keeps arrival order
                break
            batch.append(request)
            ids |= request_ids
            size += len(request.events)
        return batch

    async def _commit(self, conn: Connection, batch: list[_Request]) -> None:
        """Write one batch; on connection loss put it back (first in line) and re-raise."""
        if not batch:
            return
        try:
            await self._write(conn, batch)
        except RETRYABLE_DB_ERRORS:
            self._carry.extendleft(reversed(batch))
            raise
        except asyncpg.PostgresError as exc:
            await self._commit_one_by_one(conn, batch, exc)

    async def _write(self, conn: Connection, batch: list[_Request]) -> None:
        started = trio.current_time()
        rows = await conn.fetch(
            APPEND_SQL,
            *batch_arguments((r.events, r.payloads) for r in batch),
            timeout=self._call_timeout,
        )
        self._deliver(batch, rows)
        self.batches += 1
        if self._metrics is not None:
            self._metrics.ledger_batch_events.observe(len(rows))
            self._metrics.ledger_commit_seconds.observe(trio.current_time() - started)

    async def _commit_one_by_one(
        self, conn: Connection, batch: list[_Request], exc: asyncpg.PostgresError
    ) -> None:
        """Postgres rejected the batch's data: write request by request so only the offending
        request fails."""
        if len(batch) == 1:
            self._count_error("rejected")
            batch[0].finish(LedgerRejected(f"ledger rejected the append: {exc}"))
            return
        for index, request in enumerate(batch):
            try:
                await self._write(conn, [request])
            except RETRYABLE_DB_ERRORS:
                self._carry.extendleft(reversed(batch[index:]))
                raise
            except asyncpg.PostgresError as own:
                self._count_error("rejected")
                request.finish(LedgerRejected(f"ledger rejected the append: {own}"))

    def _deliver(self, batch: list[_Request], rows: list[Record]) -> None:
        offset = 0
        top = self._last_position
        written = 0
        for request in batch:
            mine = rows[offset : offset + len(request.events)]
            offset += len(request.events)
            statuses = {row["out_status"] for row in mine}
            if _ID_CLASH in statuses:
                request.finish(DuplicateEventId("an event id is already used by another stream"))
            elif _CONFLICT in statuses:
                request.finish(VersionConflict(_conflict_text(request.events)))
            else:
                results = [AppendResult(row["out_position"], row["out_version"]) for row in mine]
                written += sum(1 for row in mine if row["out_status"] == _OK)
                top = max(top, *(r.position for r in results))
                request.finish(results)
        if self._metrics is not None:
            self._metrics.ledger_appended.inc(written)
            conflicts = sum(1 for r in batch if isinstance(r.result, VersionConflict))
            if conflicts:
                self._metrics.ledger_append_errors.labels("conflict").inc(conflicts)
        if top > self._last_position:
            self._last_position = top
            self._appended.set()
            self._appended = trio.Event()

    def _fail_waiting(self, reason: str) -> None:
        for request in self._carry:
            request.finish(LedgerUnavailable(reason))
        self._carry.clear()
        while True:
            try:
                self._recv.receive_nowait().finish(LedgerUnavailable(reason))
            except trio.WouldBlock:
                return

    def _count_error(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.ledger_append_errors.labels(reason).inc()

    # ------------------------------------------------------------------ reading

    async def wait_beyond(self, position: int) -> None:
        """Return once this process committed an append past ``position`` (a relay wake-up;
        appends of other instances are only seen by polling)."""
        while self._last_position <= position:
            await self._appended.wait()

    async def read_stream(
        self, tenant: str, stream: str, *, after_version: int = 0, limit: int = 10_000
    ) -> list[RecordedEvent]:
        """Events of one stream with ``version > after_version``, oldest first."""
        rows = await self._fetch(_READ_STREAM, tenant, stream, after_version, limit)
        return [to_recorded(row) for row in rows]

    async def read_all(
        self, *, after_position: int = 0, limit: int = 1000, tenant: str | None = None
    ) -> list[RecordedEvent]:
        """Rows with ``position > after_position`` in commit order; never skips a row (see the
        module docstring), so ``after_position = last position read`` is a safe cursor."""
        if tenant is None:
            rows = await self._fetch(_READ_ALL, after_position, limit)
        else:
            rows = await self._fetch(_READ_ALL_TENANT, after_position, limit, tenant)
        return [to_recorded(row) for row in rows]

    async def stream_version(self, tenant: str, stream: str) -> int:
        """The stream's current version (0 for a stream with no events)."""
        version = await self._fetchval(
            "SELECT version FROM ledger_streams WHERE tenant = $1 AND stream = $2", tenant, stream
        )
        return int(version or 0)

    async def head(self) -> int:
        """The highest position ever handed out (0 for an empty ledger)."""
        return int(await self._fetchval("SELECT position FROM ledger_head WHERE id = 1"))

    async def _fetch(self, sql: str, *args: object) -> list[Record]:
        try:
            async with self._db.connection() as conn:
                return await conn.fetch(sql, *args)
        except RETRYABLE_DB_ERRORS as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _fetchval(self, sql: str, *args: object) -> Any:
        try:
            async with self._db.connection() as conn:
                return await conn.fetchval(sql, *args)
        except RETRYABLE_DB_ERRORS as exc:
            raise LedgerUnavailable(f"{type(exc).__name__}: {exc}") from exc


_encoder = msgspec.json.Encoder()


def payload_text(event: NewEvent) -> str:
    """The payload as JSON text (asyncpg sends jsonb as text); validated before it is queued,
    so one bad payload cannot fail someone else's batch."""
    if isinstance(event.payload, msgspec.Raw):
        raw = bytes(event.payload)
        msgspec.json.decode(raw)  # raises msgspec.DecodeError on malformed JSON
        return raw.decode()
    return _encoder.encode(event.payload).decode()


def batch_arguments(
    groups: Iterable[tuple[Sequence[NewEvent], Sequence[str]]],
) -> tuple[list[Any], ...]:
    """Requests (events with their payload text) as the column arrays ``ledger_append`` takes."""
    cols: tuple[list[Any], ...] = tuple([] for _ in range(11))
    req, ids, tenants, streams, subjects, payloads, expected, ops, devs, reqs, occurred = cols
    for number, (events, texts) in enumerate(groups):
        for event, payload in zip(events, texts, strict=True):
            req.append(number)
            ids.append(event.event_id)
            tenants.append(event.tenant)
            streams.append(event.stream)
            subjects.append(event.subject)
            payloads.append(payload)
            expected.append(event.expected_version)
            ops.append(event.operator_id)
            devs.append(event.device_id)
            reqs.append(event.request_id)
            occurred.append(event.occurred_at)
    return cols


def _conflict_text(events: list[NewEvent]) -> str:
    expected = {(e.tenant, e.stream): e.expected_version for e in events}
    shown = ", ".join(f"{t}/{s} expected v{v}" for (t, s), v in expected.items() if v is not None)
    return f"stream moved on: {shown}"


def to_recorded(row: Record) -> RecordedEvent:
    """A ``ledger`` row (selected with ``payload::text``) as a :class:`RecordedEvent`."""
    occurred: datetime = row["occurred_at"]
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        tenant=row["tenant"],
        stream=row["stream"],
        version=row["version"],
        subject=row["subject"],
        payload=msgspec.Raw(row["payload"].encode()),
        operator_id=row["operator_id"],
        device_id=row["device_id"],
        request_id=row["request_id"],
        occurred_at=occurred,
        recorded_at=row["recorded_at"],
    )


READ_COLUMNS = _COLUMNS
