"""Audit reads over the ledger: the replay of a tenant's trail and the invariant checks behind
``./ops/ledger verify``.

What "verified" means (see ``ledger/appendlog.py`` for why these hold by construction):

* positions: the rows are exactly ``pruned_through + 1 … head`` — no gap, none beyond the head;
* streams: each stream's versions are dense, increase with position, end at the version
  recorded in ``ledger_streams``, and start at 1 unless retention pruned the beginning;
* relay: its cursor is within ``pruned_through … head`` (nothing unpublished was pruned, nothing
  published that doesn't exist), and no row has waited longer than ``max_lag_s`` to be
  published;
* audit: every lock action and mutation attempted more than ``attempt_grace_s`` ago has its
  outcome row (``ledger/attempts.py``, FAILURE_MODES F-27).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec

from ledger.appendlog import READ_COLUMNS, to_recorded
from ledger.attempts import AttemptAudit, audit_attempts
from ledger.database import Connection, Database, Record
from ledger.model import RecordedEvent

_FILTER = (
    " WHERE tenant = $1 AND ($2::text IS NULL OR stream = $2)"
    " AND ($3::timestamptz IS NULL OR recorded_at >= $3)"
    " AND ($4::timestamptz IS NULL OR recorded_at < $4)"
)


async def count_trail(
    db: Database, tenant: str, stream: str | None, since: datetime | None, until: datetime | None
) -> int:
    sql = "SELECT count(*) FROM ledger" + _FILTER  # noqa: S608 (constant filter, bound values)
    return int(await db.fetchval(sql, tenant, stream, since, until))


async def trail(
    db: Database,
    tenant: str,
    stream: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    page: int = 1000,
) -> AsyncIterator[list[RecordedEvent]]:
    """The tenant's rows in position order, a page at a time (keyset pagination)."""
    after = 0
    sql = f"SELECT {READ_COLUMNS} FROM ledger{_FILTER} AND position > $5 ORDER BY position LIMIT $6"  # noqa: S608
    while True:
        rows = await db.fetch(sql, tenant, stream, since, until, after, page)
        if not rows:
            return
        events = [to_recorded(r) for r in rows]
        yield events
        after = events[-1].position


class Problem(msgspec.Struct, frozen=True):
    check: str  # "positions" | "versions" | "relay" | "lock-audit" | "mutation-audit"
    detail: str


class Report(msgspec.Struct, frozen=True, kw_only=True):
    head: int
    pruned_through: int
    rows: int
    streams: int
    relay: dict[str, int]
    problems: list[Problem]
    audits: list[AttemptAudit] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_GAPS = """
SELECT position + 1 AS first, next - 1 AS last FROM (
    SELECT position, lead(position) OVER (ORDER BY position) AS next FROM ledger) g
WHERE next > position + 1 ORDER BY position LIMIT 20
"""
_BAD_STREAMS = """
SELECT l.tenant, l.stream, min(l.version) AS lo, max(l.version) AS hi, count(*) AS n,
       s.version AS recorded
  FROM ledger l LEFT JOIN ledger_streams s ON s.tenant = l.tenant AND s.stream = l.stream
 GROUP BY l.tenant, l.stream, s.version
HAVING count(*) <> max(l.version) - min(l.version) + 1
    OR s.version IS DISTINCT FROM max(l.version)
    OR (min(l.version) <> 1 AND $1 = 0)
 LIMIT 20
"""
_OUT_OF_ORDER = """
SELECT tenant, stream, position, version FROM (
    SELECT tenant, stream, position, version,
           lag(version) OVER (PARTITION BY tenant, stream ORDER BY position) AS previous
      FROM ledger) v
WHERE previous IS NOT NULL AND version <> previous + 1 LIMIT 20
"""
_ORPHAN_STREAMS = """
SELECT s.tenant, s.stream, s.version FROM ledger_streams s
 WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.tenant = s.tenant AND l.stream = s.stream)
 LIMIT 20
"""


async def verify(
    db: Database,
    *,
    max_lag_s: float = 60.0,
    now: datetime | None = None,
    attempt_grace_s: float = 60.0,
) -> Report:
    """Check the invariants in one snapshot; each violation becomes a :class:`Problem`."""
    async with db.connection(timeout=120) as conn, conn.transaction(isolation="repeatable_read"):
        head = int(await conn.fetchval("SELECT position FROM ledger_head WHERE id = 1"))
        pruned = int(await conn.fetchval("SELECT pruned_through FROM ledger_retention"))
        row = await conn.fetchrow(
            "SELECT count(*) AS n, min(position) AS lo, max(position) AS hi,"
            " count(DISTINCT (tenant, stream)) AS streams FROM ledger"
        )
        assert row is not None
        problems = await _position_problems(conn, head, pruned, row)
        problems += await _version_problems(conn, pruned)
        cursors = await conn.fetch("SELECT name, position FROM relay_cursor")
        relay = {r["name"]: int(r["position"]) for r in cursors}
        for name, cursor in relay.items():
            problems += await _relay_problems(conn, name, cursor, head, pruned, max_lag_s, now)
        before = (now or datetime.now(UTC)) - timedelta(seconds=attempt_grace_s)
        audits = await audit_attempts(conn, before=before)
    return Report(
        head=head,
        pruned_through=pruned,
        rows=int(row["n"]),
        streams=int(row["streams"]),
        relay=relay,
        problems=problems + [p for a in audits for p in _audit_problems(a)],
        audits=audits,
    )


def _audit_problems(audit: AttemptAudit) -> list[Problem]:
    found = [
        Problem(
            f"{audit.check}-audit",
            f"{u.tenant}/{u.stream}: attempt {u.attempt_id} (position {u.position},"
            f" {u.recorded_at.isoformat()}) has no outcome",
        )
        for u in audit.shown
    ]
    if audit.unfinished > len(audit.shown):
        more = audit.unfinished - len(audit.shown)
        found.append(Problem(f"{audit.check}-audit", f"… and {more} more without an outcome"))
    return found


async def _position_problems(
    conn: Connection, head: int, pruned: int, row: Record
) -> list[Problem]:
    count, low, high = int(row["n"]), row["lo"], row["hi"]
    if count == head - pruned and (not count or (low == pruned + 1 and high == head)):
        return []
    summary = (
        f"expected positions {pruned + 1}..{head} ({head - pruned} rows),"
        f" found {count} rows in {low}..{high}"
    )
    gaps = [f"gap: {g['first']}..{g['last']} missing" for g in await conn.fetch(_GAPS)]
    return [Problem("positions", text) for text in (summary, *gaps)]


async def _version_problems(conn: Connection, pruned: int) -> list[Problem]:
    found = [
        f"{b['tenant']}/{b['stream']}: {b['n']} rows with versions {b['lo']}..{b['hi']},"
        f" stream head says {b['recorded']}"
        for b in await conn.fetch(_BAD_STREAMS, pruned)
    ]
    found += [
        f"{b['tenant']}/{b['stream']}: version {b['version']} at position {b['position']}"
        " does not follow the previous version"
        for b in await conn.fetch(_OUT_OF_ORDER)
    ]
    if pruned == 0:  # without retention every stream head must have rows
        found += [
            f"{b['tenant']}/{b['stream']}: head says v{b['version']} but there are no rows"
            for b in await conn.fetch(_ORPHAN_STREAMS)
        ]
    return [Problem("versions", text) for text in found]


async def _relay_problems(
    conn: Connection,
    name: str,
    cursor: int,
    head: int,
    pruned: int,
    max_lag_s: float,
    now: datetime | None,
) -> list[Problem]:
    found = []
    if cursor > head:
        found.append(f"{name}: cursor {cursor} is beyond the head {head}")
    if cursor < pruned:
        found.append(f"{name}: rows {cursor + 1}..{pruned} were pruned before they were published")
    if cursor < head:
        oldest = await conn.fetchval(
            "SELECT recorded_at FROM ledger WHERE position = $1", max(cursor, pruned) + 1
        )
        age = ((now or datetime.now(UTC)) - oldest).total_seconds() if oldest else 0.0
        if age > max_lag_s:
            found.append(
                f"{name}: {head - cursor} rows unpublished (positions {cursor + 1}..{head});"
                f" the oldest has waited {age:.0f}s (limit {max_lag_s:.0f}s)"
            )
    return [Problem("relay", text) for text in found]
