"""Retention of activity rows (90 days by default): a periodic, batched deletion job.

Why deletion and not partitions: positions are dense and rows only ever leave from the oldest
end, so retention is "delete a prefix of positions". Each run deletes at most ``batch``
positions per short transaction, which keeps locks and WAL bursts small; appends touch only the
newest rows and the ``ledger_head`` row, so the job runs safely while appending.

Rules that keep the relay and ``./ops/ledger verify`` right after deletion:

* never delete beyond the relay cursor (a row must be published before it may go);
* delete whole prefixes only, and record the prefix in ``ledger_retention.pruned_through`` in the
  same transaction, so "positions are gap-free" still holds for what remains
  (``pruned_through + 1 … head``);
* stream versions live on in ``ledger_streams``, so a pruned stream never restarts at 1.

The cutoff is "the last row recorded before now - retention": ``recorded_at`` is taken under the
append lock, so it grows with position (a clock stepping back can only make a row go a little
late, never leave a hole).

What this keeps 90 days (``BFF_LEDGER_RETENTION_DAYS``) is the ``OperatorActivity`` aggregate
(SERVICE_OVERVIEW §3): the ``activity:<operatorId>`` streams, and the records their rows point
to (mutation and lock audits in their targets' streams, acks, decisions, deliveries). One prefix
rule for all of them, so an operator's shift never outlives or predates the records it names.
An attempt always precedes its outcome, so pruning never leaves an attempt whose outcome is
gone (``ledger/attempts.py`` stays exact after pruning).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import trio

from ledger.appendlog import RETRYABLE_DB_ERRORS
from ledger.database import Database
from ledger.instruments import LedgerInstruments

log = logging.getLogger("bff.ledger.retention")

_NEWEST_EXPIRED = """
SELECT position FROM ledger WHERE recorded_at < $1
 ORDER BY recorded_at DESC, position DESC LIMIT 1
"""
_PUBLISHED = "SELECT coalesce(min(position), 0) FROM relay_cursor"


async def prune_once(
    db: Database,
    *,
    older_than: timedelta,
    batch: int = 5000,
    now: datetime | None = None,
    metrics: LedgerInstruments | None = None,
) -> int:
    """Delete published rows recorded before ``now - older_than``; return how many went."""
    cutoff = (now or datetime.now(UTC)) - older_than
    deleted = 0
    async with db.connection() as conn:
        old = await conn.fetchval(_NEWEST_EXPIRED, cutoff)
        # NB: not SQL LEAST(), which ignores NULL ("no old rows") and would prune published rows
        bound = None if old is None else min(int(old), int(await conn.fetchval(_PUBLISHED)))
        while bound is not None:
            async with conn.transaction():
                done = await conn.fetchval(
                    "SELECT pruned_through FROM ledger_retention WHERE id = 1 FOR UPDATE"
                )
                if done >= bound:
                    break
                upto = min(done + batch, bound)
                status = await conn.execute(
                    "DELETE FROM ledger WHERE position > $1 AND position <= $2", done, upto
                )
                await conn.execute(
                    "UPDATE ledger_retention SET pruned_through = $1, pruned_at = now()"
                    " WHERE id = 1",
                    upto,
                )
            count = int(status.rsplit(" ", 1)[-1])
            deleted += count
            if metrics is not None:
                metrics.ledger_pruned.inc(count)
            await trio.lowlevel.checkpoint()
    return deleted


async def run_retention(
    db: Database,
    *,
    older_than: timedelta,
    interval_s: float,
    batch: int = 5000,
    metrics: LedgerInstruments | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Prune every ``interval_s`` seconds until cancelled; a failed run is retried next time."""
    task_status.started()
    while True:
        try:
            deleted = await prune_once(db, older_than=older_than, batch=batch, metrics=metrics)
            if deleted:
                log.info("ledger retention pruned rows", extra={"rows": deleted})
        except RETRYABLE_DB_ERRORS as exc:
            log.warning("ledger retention skipped", extra={"error": f"{type(exc).__name__}"})
        await trio.sleep(interval_s)
