"""Audit completeness of mutations (FAILURE_MODES F-27: lock-audit completeness 100%).

Every lock action and domain mutation is recorded as an attempt row before its upstream is
called and an outcome row (same stream, same ``attemptId``) before the desktop hears back
(``actors/mutations.py``). An attempt without an outcome therefore means the BFF crashed, or
lost Postgres, while the action was in flight: whether the upstream acted is unknown, and a
person must find out. ``./ops/ledger verify`` reports each one.

An attempt younger than ``grace`` is still running (a lock action takes at most 1.2 s), so
only older ones count. Retention prunes prefixes of positions and an attempt always precedes
its outcome, so pruning never leaves an attempt without the outcome that followed it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from ledger.database import Connection
from schemas.actor_events import (
    LOCK_ATTEMPTED,
    LOCK_PROXIED,
    MUTATION_ATTEMPTED,
    MUTATION_PROXIED,
)

# check name → (attempt subject, outcome subject)
PAIRS: dict[str, tuple[str, str]] = {
    "lock": (LOCK_ATTEMPTED, LOCK_PROXIED),
    "mutation": (MUTATION_ATTEMPTED, MUTATION_PROXIED),
}
SHOWN = 20  # unfinished attempts listed per check (all are counted)

_ATTEMPTS = "SELECT count(*) FROM ledger WHERE subject = $1 AND recorded_at < $2"
_UNFINISHED = """
SELECT a.tenant, a.stream, a.position, a.payload->>'attemptId' AS attempt, a.recorded_at
  FROM ledger a
 WHERE a.subject = $1 AND a.recorded_at < $3
   AND NOT EXISTS (
       SELECT 1 FROM ledger o
        WHERE o.tenant = a.tenant AND o.stream = a.stream AND o.subject = $2
          AND o.payload->>'attemptId' = a.payload->>'attemptId')
 ORDER BY a.position
"""
_COUNT_UNFINISHED = f"SELECT count(*) FROM ({_UNFINISHED}) u"  # noqa: S608 (constant)
_LIST_UNFINISHED = f"{_UNFINISHED} LIMIT {SHOWN}"


class Unfinished(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    stream: str
    position: int
    attempt_id: str
    recorded_at: datetime


class AttemptAudit(msgspec.Struct, frozen=True, kw_only=True):
    """One check's figures: attempts older than the grace, how many have no outcome, and the
    first of those."""

    check: str
    attempts: int
    unfinished: int
    shown: list[Unfinished]

    @property
    def completeness(self) -> float:
        return 1.0 if not self.attempts else 1 - self.unfinished / self.attempts


async def audit_attempts(conn: Connection, *, before: datetime) -> list[AttemptAudit]:
    """Each check of :data:`PAIRS` over the attempts recorded before ``before``."""
    found = []
    for check, (attempted, proxied) in PAIRS.items():
        attempts = int(await conn.fetchval(_ATTEMPTS, attempted, before))
        unfinished = int(await conn.fetchval(_COUNT_UNFINISHED, attempted, proxied, before))
        rows = await conn.fetch(_LIST_UNFINISHED, attempted, proxied, before) if unfinished else []
        shown = [
            Unfinished(
                tenant=r["tenant"],
                stream=r["stream"],
                position=int(r["position"]),
                attempt_id=r["attempt"] or "?",
                recorded_at=r["recorded_at"],
            )
            for r in rows
        ]
        found.append(
            AttemptAudit(check=check, attempts=attempts, unfinished=unfinished, shown=shown)
        )
    return found


_WINDOW_ATTEMPTS = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE NOT EXISTS (
           SELECT 1 FROM ledger o
            WHERE o.tenant = a.tenant AND o.stream = a.stream AND o.subject = $2
              AND o.payload->>'attemptId' = a.payload->>'attemptId')) AS unfinished
  FROM ledger a
 WHERE a.subject = $1 AND a.recorded_at >= $3 AND a.recorded_at < $4
"""


async def window_completeness(
    conn: Connection, *, since: datetime, before: datetime
) -> dict[str, tuple[int, int]]:
    """Per check, ``(attempts, unfinished)`` over the attempts recorded in ``[since, before)``:
    the bounded form of :func:`audit_attempts` a service can afford every minute (the
    ``recorded_at`` index bounds the scan; each outcome lookup is one stream's rows)."""
    found = {}
    for check, (attempted, proxied) in PAIRS.items():
        row = await conn.fetchrow(_WINDOW_ATTEMPTS, attempted, proxied, since, before)
        assert row is not None  # an aggregate always answers one row
        found[check] = (int(row["attempts"]), int(row["unfinished"]))
    return found
