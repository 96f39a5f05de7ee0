"""The outbox relay: publishes every ledger row, in position order, to the bus.

* **One active relay** across all instances: the relay that holds the Postgres session advisory
  lock ``RELAY_LOCK`` on its connection publishes; the others stand by and retry the lock. If
  the leader's connection dies, Postgres drops the lock and another instance takes over.
* **In order, nothing skipped**: it reads ``position > cursor ORDER BY position``; positions are
  dense and become visible in commit order (see ``ledger/appendlog.py``), so this never skips a row
  even while appends are committing.
* **Durable progress**: the cursor (``relay_cursor``) moves only after the broker acknowledged
  the whole batch. A crash between publish and cursor update re-publishes that batch; consumers
  dedupe on the event id (message attribute ``eventId``).
* **Broker down** (F-21/F-22): the batch is retried with capped exponential backoff and jitter;
  rows wait in the ledger (retention never deletes rows past the cursor), nothing is lost, and
  per-stream order holds because the same batch is re-sent from the same cursor.

Topic: :func:`edge.bus.port.topic_for` of the subject (``melmastoon.bff.backoffice``); ordering
key: tenant + stream; the message data is :class:`edge.bus.codec.LedgerEnvelope`.
"""

from __future__ import annotations

import logging
import random

import trio

from edge.bus.codec import ledger_message
from edge.bus.port import BusUnavailable, Publisher
from edge.metrics import Metrics
from ledger.appendlog import READ_COLUMNS, RETRYABLE_DB_ERRORS, Ledger, to_recorded
from ledger.database import Connection, Database
from ledger.model import RecordedEvent

log = logging.getLogger("bff.relay")

RELAY_LOCK = 0x72656C61  # "rela"
_LAG = """
SELECT h.position AS head,
       (SELECT extract(epoch FROM now() - recorded_at) FROM ledger WHERE position = $1) AS age
  FROM ledger_head h WHERE h.id = 1
"""
_ROWS = f"SELECT {READ_COLUMNS} FROM ledger WHERE position > $1 ORDER BY position LIMIT $2"  # noqa: S608


class Relay:
    """Publishes the ledger to ``publisher``; :meth:`run` until cancelled."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        name: str = "bus",
        batch: int = 500,
        poll_s: float = 0.2,
        standby_s: float = 2.0,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 30.0,
        publish_timeout_s: float = 30.0,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._ledger = ledger
        self._metrics = metrics
        self._name = name
        self._batch = batch
        self._poll = poll_s
        self._standby = standby_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._publish_timeout = publish_timeout_s
        self.position = 0  # last position this relay published (tests, /metrics)
        self.leading = False
        self.failures = 0  # publish attempts refused since start (tests read it)
        self._moved = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        errors = 0
        while True:
            try:
                async with self._db.connection() as conn:
                    errors = 0
                    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                        try:
                            self.leading = True
                            await self._lead(conn)
                        finally:
                            self.leading = False
                            self._clear_lag()  # the next leader reports it
                            # the pool's reset on release also unlocks; this is belt and braces
                            with trio.CancelScope(shield=True), trio.move_on_after(2):
                                await conn.execute("SELECT pg_advisory_unlock_all()")
            except RETRYABLE_DB_ERRORS as exc:
                errors += 1
                if errors == 1 or errors % 20 == 0:
                    log.warning(
                        "relay lost Postgres; retrying",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                    )
                await trio.sleep(self._delay(errors))
                continue
            await trio.sleep(self._standby)  # another instance is the relay

    async def wait_for(self, position: int) -> None:
        """Return once this relay has published up to ``position`` (tests)."""
        while self.position < position:
            await self._moved.wait()

    async def _lead(self, conn: Connection) -> None:
        cursor = await conn.fetchval(
            "INSERT INTO relay_cursor (name, position) VALUES ($1, 0)"
            " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING position",
            self._name,
        )
        self._advance(int(cursor))
        log.info("relay leading", extra={"position": self.position})
        while True:
            rows = [to_recorded(r) for r in await conn.fetch(_ROWS, self.position, self._batch)]
            if not rows:
                await self._update_lag(conn)
                await self._idle()
                continue
            if rows[0].position != self.position + 1:
                log.error(
                    "ledger positions not contiguous after the relay cursor",
                    extra={"cursor": self.position, "next": rows[0].position},
                )
            await self._publish(conn, rows)
            last = rows[-1].position
            await conn.execute(
                "UPDATE relay_cursor SET position = $2, updated_at = now()"
                " WHERE name = $1 AND position < $2",
                self._name,
                last,
            )
            self._advance(last)
            if self._metrics is not None:
                self._metrics.relay_published.inc(len(rows))
                await self._update_lag(conn)

    async def _publish(self, conn: Connection, rows: list[RecordedEvent]) -> None:
        messages = [ledger_message(r) for r in rows]
        attempt = 0
        while True:
            try:
                with trio.fail_after(self._publish_timeout):
                    await self._publisher.publish(messages)
                if attempt:
                    log.info("relay publishing again", extra={"attempts": attempt + 1})
                return
            except (BusUnavailable, trio.TooSlowError) as exc:
                attempt += 1
                self.failures += 1
                if self._metrics is not None:
                    self._metrics.relay_publish_failures.inc()
                    await self._update_lag(conn)  # F-21: the depth grows while the bus is down
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "relay publish failed; rows wait in the ledger",
                        extra={
                            "attempt": attempt,
                            "from": rows[0].position,
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                        },
                    )
                await trio.sleep(self._delay(attempt))

    async def _idle(self) -> None:
        with trio.move_on_after(self._poll):
            if self._ledger is not None:
                await self._ledger.wait_beyond(self.position)
            else:
                await trio.sleep_forever()

    async def _update_lag(self, conn: Connection) -> None:
        """Outbox depth (rows past the cursor) and lag (age of the oldest of them)."""
        if self._metrics is not None:
            row = await conn.fetchrow(_LAG, self.position + 1)
            assert row is not None  # ledger_head always has its one row
            self._metrics.relay_lag.set(max(0, int(row["head"]) - self.position))
            self._metrics.relay_lag_seconds.set(max(0.0, float(row["age"] or 0.0)))

    def _clear_lag(self) -> None:
        if self._metrics is not None:
            self._metrics.relay_lag.set(0)
            self._metrics.relay_lag_seconds.set(0)

    def _advance(self, position: int) -> None:
        self.position = position
        if self._metrics is not None:
            self._metrics.relay_position.set(position)
        self._moved.set()
        self._moved = trio.Event()

    def _delay(self, attempt: int) -> float:
        low, high = self._backoff
        return float(min(high, low * 2.0 ** min(attempt - 1, 16)) * random.uniform(0.5, 1.0))
