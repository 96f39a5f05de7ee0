"""``Idempotency-Key`` at the upstream, as a real domain service honours it.

Scope: (service, tenant, key), kept 24 h. The same key with the same request replays the first
answer (status and body) with ``Idempotent-Replayed: true`` and does not execute again; the same
key with a different request is 422. 5xx answers are not stored, so a retry executes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ops.sim.http import HttpError, Request, Response

TTL_S = 24 * 3600
MAX_ENTRIES = 200_000


@dataclass
class _Entry:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    stored_at: float


class IdempotencyStore:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    def lookup(self, service: str, tenant: str, request: Request) -> Response | None:
        """The stored answer for this key (a replay), or None when the request must execute."""
        key = request.header("idempotency-key")
        if not key:
            return None
        entry = self._entries.get((service, tenant, key))
        if entry is None or time.monotonic() - entry.stored_at > TTL_S:
            return None
        if entry.fingerprint != _fingerprint(request):
            raise HttpError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was used with a different request",
            )
        return Response(
            entry.status, entry.body, {"Idempotent-Replayed": "true"}, entry.content_type
        )

    def store(self, service: str, tenant: str, request: Request, response: Response) -> None:
        key = request.header("idempotency-key")
        if not key or response.status >= 500 or response.status in (409, 422):
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._expire()
        self._entries[(service, tenant, key)] = _Entry(
            _fingerprint(request),
            response.status,
            response.body(),
            response.content_type,
            time.monotonic(),
        )

    def clear(self) -> None:
        self._entries.clear()

    def _expire(self) -> None:
        cutoff = time.monotonic() - TTL_S
        for k in [k for k, e in self._entries.items() if e.stored_at < cutoff]:
            del self._entries[k]
        while len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
