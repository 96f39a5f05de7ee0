"""Every call each upstream received, for ``GET /_sim/calls`` (e.g. to prove that a retried
mutation reached the upstream once, or that an upstream call carried a Google ID token)."""

from __future__ import annotations

import base64
import itertools
from collections import deque
from datetime import datetime
from typing import Any

import msgspec

from ops.sim.http import Request
from ops.sim.world import utc_now

MAX_PER_SERVICE = 5000


class CallRecord(msgspec.Struct, rename="camel", kw_only=True):
    seq: int
    service: str
    method: str
    path: str
    mutation: bool
    received_at: datetime
    status: int = 0  # 0 while unanswered (a hang never gets one)
    replayed: bool = False
    fault: str | None = None
    idempotency_key: str | None = None
    request_id: str | None = None
    deadline_ms: int | None = None
    auth: str = "none"
    id_token_audience: str | None = None
    body: Any = None
    duration_ms: float = 0.0


class CallLog:
    def __init__(self) -> None:
        self._calls: dict[str, deque[CallRecord]] = {}
        self._seq = itertools.count(1)

    def record(self, service: str, request: Request, *, mutation: bool) -> CallRecord:
        auth_header = request.header("authorization") or ""
        scheme, _, token = auth_header.partition(" ")
        deadline = request.header("x-deadline-ms")
        record = CallRecord(
            seq=next(self._seq),
            service=service,
            method=request.method,
            path=request.path,
            mutation=mutation,
            received_at=utc_now(),
            idempotency_key=request.header("idempotency-key"),
            request_id=request.header("x-request-id"),
            deadline_ms=int(deadline) if deadline and deadline.isdigit() else None,
            auth=scheme.lower() if scheme else "none",
            id_token_audience=_jwt_audience(token) if scheme.lower() == "bearer" else None,
            body=_json_or_none(request.body) if mutation else None,
        )
        self._calls.setdefault(service, deque(maxlen=MAX_PER_SERVICE)).append(record)
        return record

    def list(self, service: str | None, *, mutations_only: bool) -> list[CallRecord]:
        groups = [self._calls.get(service, deque())] if service else list(self._calls.values())
        found = [c for group in groups for c in group if c.mutation or not mutations_only]
        return sorted(found, key=lambda c: c.seq)

    def clear(self) -> None:
        self._calls.clear()


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


def _jwt_audience(token: str) -> str | None:
    """The ``aud`` of a JWT, read without verification (only to report it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = msgspec.json.decode(
            base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        )
    except (ValueError, msgspec.DecodeError):
        return None
    aud = claims.get("aud") if isinstance(claims, dict) else None
    return aud if isinstance(aud, str) else None
