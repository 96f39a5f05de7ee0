"""Idempotency keys in Postgres (table ``idempotency_keys``, migration 0004): the memory that
makes a retried mutation answer what the first one answered instead of running again.

One row per ``(tenant, device, key)``: the request's fingerprint, whether it is still running
(``in_flight``, under a lease) or ``done`` (with its final response), and when it is forgotten.
Why Postgres and not Redis: a replayed mutation must never run twice because a cache evicted a
key or restarted empty, and Postgres being down must refuse the mutation rather than let it run
un-deduplicated (FAILURE_MODES F-20) — every method here raises :class:`DatabaseUnavailable`
when Postgres cannot answer, and the edge answers 503 before the handler runs.

A claim holds a random ``token``; only that claim can complete or release the row, so a request
whose lease ran out (and whose row another request took over) can never overwrite or delete the
newer claim. Leases exist for one reason: an instance that crashes mid-request leaves its row in
flight, and a retry must be able to run again once the lease is over — the key it forwards is
absorbed by the upstream (F-32).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from ledger.appendlog import RETRYABLE_DB_ERRORS
from ledger.database import Database, DatabaseUnavailable, Record

DEFAULT_TTL_S = 86_400.0
DEFAULT_LEASE_S = 30.0
PRUNE_BATCH = 1000  # rows per cleanup statement: short transactions, small WAL bursts


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A final response as it is replayed: status, body bytes, content type and the headers
    worth repeating (never hop-by-hop or per-request ones)."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """This request holds the key and runs; pass it back to ``complete`` or ``release``.
    ``taken_over``: a previous holder's lease had run out (it crashed or hung)."""

    tenant: str
    device_id: str
    key: str
    token: uuid.UUID
    taken_over: bool = False


class Replay(msgspec.Struct, frozen=True):
    """The same request finished before: answer its response."""

    response: StoredResponse


class InFlight(msgspec.Struct, frozen=True):
    """The same request is running elsewhere; its lease has ``lease_left_s`` to go."""

    lease_left_s: float


class Reused(msgspec.Struct, frozen=True):
    """The key was first used for a different request."""


ClaimOutcome = Claimed | Replay | InFlight | Reused

_CLAIM = "SELECT * FROM idempotency_claim($1, $2, $3, $4, $5, $6, $7)"

_COMPLETE = """
UPDATE idempotency_keys
   SET state = 'done', status = $5, content_type = $6, headers = $7::jsonb, body = $8,
       completed_at = now()
 WHERE tenant = $1 AND device_id = $2 AND key = $3 AND token = $4 AND state = 'in_flight'
RETURNING 1
"""

_RELEASE = """
DELETE FROM idempotency_keys
 WHERE tenant = $1 AND device_id = $2 AND key = $3 AND token = $4 AND state = 'in_flight'
RETURNING 1
"""

_PRUNE = """
WITH doomed AS (
    SELECT tenant, device_id, key FROM idempotency_keys
     WHERE expires_at <= now()
     ORDER BY expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency_keys AS k USING doomed AS d
 WHERE k.tenant = d.tenant AND k.device_id = d.device_id AND k.key = d.key
"""

_headers = msgspec.json.Encoder()
_read_headers = msgspec.json.Decoder(list[tuple[str, str]])


class IdempotencyStore:
    """Claim, complete, release and prune idempotency keys. ``lease_s`` must outlast the
    longest request (every upstream deadline with its retries); ``ttl_s`` is how long a key is
    remembered (24 h by default, a floor for the desktop's offline outbox)."""

    def __init__(
        self, db: Database, *, ttl_s: float = DEFAULT_TTL_S, lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        self._db = db
        self.ttl_s = float(ttl_s)
        self.lease_s = float(lease_s)

    async def claim(
        self, tenant: str, device_id: str, key: str, fingerprint: bytes
    ) -> ClaimOutcome:
        """One round trip (the ``idempotency_claim`` function): take the key for this request,
        or learn that it is done, running elsewhere, or another request's."""
        token = uuid.uuid4()
        row = await self._one(
            _CLAIM, tenant, device_id, key, fingerprint, token, self.lease_s, self.ttl_s
        )
        if row is None:
            raise DatabaseUnavailable("idempotency_claim answered no row")
        return _outcome(row, Claimed(tenant=tenant, device_id=device_id, key=key, token=token))

    async def complete(self, claim: Claimed, response: StoredResponse) -> bool:
        """Store the final response; False when the claim is no longer held (its lease ran out
        and another request took the key over: that one will store its own answer)."""
        headers = _headers.encode([list(pair) for pair in response.headers]).decode()
        row = await self._one(
            _COMPLETE,
            *_scope(claim),
            claim.token,
            response.status,
            response.content_type,
            headers,
            response.body,
        )
        return row is not None

    async def release(self, claim: Claimed) -> bool:
        """Forget the claim (the request failed in a way a retry may repair): the next request
        with the key runs. False when the claim is no longer held."""
        row = await self._one(_RELEASE, *_scope(claim), claim.token)
        return row is not None

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete every expired row, ``batch`` rows per statement; return how many went. Rows
        are deleted oldest first and locked rows are skipped, so instances may prune at once."""
        deleted = 0
        try:
            async with self._db.connection() as conn:
                while True:
                    status = await conn.execute(_PRUNE, batch)
                    count = int(status.rsplit(" ", 1)[-1])
                    deleted += count
                    if count < batch:
                        return deleted
        except DatabaseUnavailable:
            raise
        except RETRYABLE_DB_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def _one(self, sql: str, *args: Any) -> Record | None:
        """One statement, one row, in one bridge crossing (``Database.fetchrow_once``)."""
        try:
            return await self._db.fetchrow_once(sql, *args)
        except DatabaseUnavailable:
            raise
        except RETRYABLE_DB_ERRORS as exc:
            raise _unavailable(exc) from exc


def _scope(claim: Claimed) -> tuple[str, str, str]:
    return claim.tenant, claim.device_id, claim.key


def _outcome(row: Record, claimed: Claimed) -> ClaimOutcome:
    kind = row["outcome"]
    if kind == "claimed":
        return claimed
    if kind == "taken_over":
        return msgspec.structs.replace(claimed, taken_over=True)
    if kind == "replay":
        headers = row["stored_headers"]
        return Replay(
            StoredResponse(
                status=int(row["stored_status"]),
                body=bytes(row["stored_body"]),
                content_type=str(row["stored_content_type"]),
                headers=tuple(_read_headers.decode(headers)) if headers else (),
            )
        )
    if kind == "in_flight":
        return InFlight(max(0.0, float(row["lease_left_s"])))
    if kind == "reused":
        return Reused()
    raise ValueError(f"idempotency_claim answered {kind!r}")


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    """A server that stops answering midway is an outage like one that cannot be reached."""
    return DatabaseUnavailable(f"{type(exc).__name__}: {exc}")
