"""Sync routes (API contract §9; SERVICE_OVERVIEW §1, §4): the device's cursor, the sync
handshake and the offline-queue hint.

The desktop pulls and pushes bulk data with sync-service directly; this BFF only orchestrates
the handshake and keeps ``DeviceSyncStatus`` — the device's cursor cache (Postgres, copied to
the cache tier), its heartbeat's sync fields and the offline-queue hint. Every write goes
through the device's DeviceActor (``actors/device_sync.py``).

* **Cursor** (``schemas/sync.py``): sync-service's integer ``cursorVersion`` as a canonical
  decimal string, compared as an integer. ``POST /sync/cursor`` tells sync-service first (the
  authority; 700 ms, no retry, the ``Idempotency-Key`` passed on), then moves the BFF's cursor
  forward to what sync-service answered. An older cursor is not an error: the answer is 200
  with the cursor unchanged and ``advanced: false`` (sync-service answers the same way, and a
  desktop replaying its queue after an offline period must not fail on a stale advance).
* **Handshake**: sync-service's handshake and its authoritative cursor for the device, asked
  at once. sync-service down or slow (F-13) → 502 UPSTREAM_UNAVAILABLE / 504 UPSTREAM_TIMEOUT
  with ``Retry-After: 30``: the desktop stays offline and retries in 30 s. When the BFF's
  cached cursor differs from the authoritative one (F-35) the divergence is logged and counted
  and the cache is reset to it (compare-and-set: an advance that landed meanwhile wins).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import get_args

import msgspec
import trio
from prometheus_client import Counter
from quart import Response

from actors.address import device
from actors.device_sync import AdvanceCursor, CompleteHandshake, CursorAck, RecordQueueHint
from actors.errors import ActorError, SystemNotRunning
from actors.ports import CachedCursor
from edge.api import Api, decode_body, decode_query
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.errors import ApiError, Code, code_for_actor_error
from edge.idempotency import idempotent
from edge.sync_instruments import sync_instruments
from edge.upstream.errors import UpstreamFailure
from ledger.database import DatabaseUnavailable
from schemas.sync import (
    MAX_CURSOR_DIGITS,
    AdvanceCursorBody,
    CursorAdvanced,
    CursorQuery,
    CursorSource,
    Handshake,
    HandshakeBody,
    QueueHint,
    QueueHintBody,
    SyncCursor,
    cursor_value,
)
from schemas.sync_registry import SCOPES, SYNC_SCHEMA_VERSION, SyncScope
from schemas.upstream.sync import CursorAdvance, DeviceCursor, HandshakeRequest, HandshakeResponse

log = logging.getLogger("bff.routes.sync")
api = Api()
BASE = "/bff/backoffice/v1"
JSON = "application/json; charset=utf-8"
RETRY_OFFLINE_S = 30  # FAILURE_MODES F-13: "retry handshake every 30 s"
CLOCK_SKEW_S = 300  # a client's timestamps may run this far ahead of ours
ACTOR_ERRORS = (Code.SERVICE_UNAVAILABLE, Code.OVERLOADED, Code.CACHE_UNAVAILABLE)
UPSTREAM_ERRORS = (
    Code.UPSTREAM_UNAVAILABLE,
    Code.UPSTREAM_TIMEOUT,
    Code.SCHEMA_DRIFT,
    Code.NOT_FOUND,
)
_SOURCES: dict[str, CursorSource] = {s: s for s in get_args(CursorSource)}
_encoder = msgspec.json.Encoder()


def _json(body: msgspec.Struct) -> Response:
    return Response(_encoder.encode(body), content_type=JSON, headers={"Cache-Control": "no-store"})


# --- cursor ------------------------------------------------------------------------------------


@api.route(
    f"{BASE}/sync/cursor",
    summary="The device's last-known sync cursor (`null` before its first handshake or "
    "advance). Read from Postgres; while Postgres is down, from the cache tier's copy",
    tag="sync",
    query=CursorQuery,
    response=SyncCursor,
    auth="read",
    errors=(Code.SERVICE_UNAVAILABLE,),
)
async def get_cursor(services: Services, *, principal: Principal) -> Response:
    query = decode_query(CursorQuery)
    _own_device(principal, query.device_id)
    cached = await _read_cursor(services, principal)
    return _json(_view(query.device_id, cached))


@api.route(
    f"{BASE}/sync/cursor",
    "POST",
    summary="Advance the device's cursor after a pull. A cursor never moves backwards: one "
    "that is not newer answers 200 with the cursor unchanged and `advanced: false`. "
    "sync-service (the authority; 700 ms, no retry) is told first",
    tag="sync",
    body=AdvanceCursorBody,
    response=CursorAdvanced,
    auth="mutation",
    idempotency="accepted",
    errors=(
        Code.IDEMPOTENCY_KEY_REUSED,
        Code.IDEMPOTENCY_IN_FLIGHT,
        *UPSTREAM_ERRORS,
        *ACTOR_ERRORS,
    ),
)
async def advance_cursor(services: Services, *, principal: Principal) -> Response:
    body = await decode_body(AdvanceCursorBody)
    _own_device(principal, body.device_id)
    cursor = cursor_value(body.cursor)

    async def run(key: str | None) -> Response:
        return await _advance(services, principal, cursor, key)

    return await idempotent(services, principal, run, required=False)


async def _advance(
    services: Services, principal: Principal, cursor: int, key: str | None
) -> Response:
    meters = sync_instruments(services.metrics).advances
    try:
        authority = await services.upstreams.sync.advance_cursor(
            principal.tenant, principal.device_id, CursorAdvance(cursor_version=cursor), key
        )
    except UpstreamFailure:
        meters.labels("upstream_failed").inc()
        raise
    # sync-service's cursor is never behind what it was told (it only moves forward).
    answered = _in_range(authority.cursor_version)
    if answered is None:
        meters.labels("upstream_failed").inc()
        raise ApiError(Code.SCHEMA_DRIFT, "sync-service answered a cursor out of range")
    command = AdvanceCursor(cursor=max(cursor, answered), operator_id=principal.operator_id)
    failed = "the cursor advanced at sync-service but was not recorded; retry"
    ack = await _ask(services, principal, command, failed, meters.labels("unrecorded"))
    meters.labels("advanced" if ack.changed else "unchanged").inc()
    status = ack.status
    assert status is not None and status.cursor_version is not None
    return _json(
        CursorAdvanced(
            device_id=principal.device_id,
            cursor=str(status.cursor_version),
            advanced=ack.changed,
            updated_at=status.cursor_at,
        )
    )


# --- handshake ---------------------------------------------------------------------------------


@api.route(
    f"{BASE}/sync/handshake",
    "POST",
    summary="Negotiate a sync session with sync-service (700 ms, no retry): a sync-session "
    "token and the URL the desktop pulls from directly (the BFF never proxies bulk data), and "
    "the authoritative cursor. `scopes` (default all) must be in the sync registry. "
    "sync-service down or slow: 502/504 with `Retry-After: 30` — stay offline, retry in 30 s",
    tag="sync",
    body=HandshakeBody,
    response=Handshake,
    auth="mutation",
    errors=(*UPSTREAM_ERRORS, Code.SERVICE_UNAVAILABLE),
)
async def handshake(services: Services, *, principal: Principal) -> Response:
    body = await decode_body(HandshakeBody)
    _own_device(principal, body.device_id)
    scopes = _scopes(body.scopes)
    cached = await _cached_for_handshake(services, principal)
    request = HandshakeRequest(
        operator_id=principal.operator_id,
        app_version=principal.app_version,
        schema_version=SYNC_SCHEMA_VERSION,
        cursor_version=cached.cursor if cached else 0,
    )
    answer, authority = await _ask_sync_service(services, principal, request)
    meters = sync_instruments(services.metrics)
    cursor = _in_range(authority.cursor_version) if authority else None
    _note_divergence(services, principal, cached, cursor)
    command = CompleteHandshake(
        command_id=uuid.uuid4().hex,
        cursor=cursor,
        cached=cached.cursor if cached else None,
        cached_revision=cached.revision if cached else 0,
        mode=answer.mode,
        scopes=list(scopes),
        operator_id=principal.operator_id,
    )
    reset = await _record_handshake(services, principal, command)
    outcome = "unrecorded" if reset is None else "ok" if authority else "unverified"
    meters.handshakes.labels(outcome).inc()
    known = cursor if cursor is not None else (cached.cursor if cached else 0)
    expires_in = int((answer.expires_at - datetime.now(UTC)).total_seconds())
    return _json(
        Handshake(
            sync_session_token=answer.sync_session_token,
            sync_url=answer.pull_url,
            expires_in=max(0, expires_in),
            cursor=str(known),
            mode=answer.mode,
            scopes=list(scopes),
            server_cursor=str(answer.server_cursor_version),
            cursor_reset=bool(reset),
        )
    )


def _scopes(asked: list[SyncScope] | None) -> tuple[SyncScope, ...]:
    """The scopes asked for (each in the registry: the Struct's type says so), each once."""
    if asked is None:
        return SCOPES
    for index, scope in enumerate(asked):
        if scope in asked[:index]:
            raise ApiError(Code.VALIDATION_FAILED, f"scopes[{index}]: {scope!r} given twice")
    return tuple(asked)


async def _cached_for_handshake(services: Services, principal: Principal) -> CachedCursor | None:
    """What the BFF holds; nothing when neither Postgres nor the cache tier can say (the
    handshake goes on: sync-service's cursor is the one that counts)."""
    try:
        return await _read_cursor(services, principal)
    except DatabaseUnavailable:
        return None


async def _ask_sync_service(
    services: Services, principal: Principal, request: HandshakeRequest
) -> tuple[HandshakeResponse, DeviceCursor | None]:
    """sync-service's handshake and, at the same time, its cursor of the device (``None`` when
    that read failed: the handshake stands without a divergence check)."""
    sync = services.upstreams.sync
    tenant, device_id = principal.tenant, principal.device_id
    authority: list[DeviceCursor] = []
    failure: ApiError | None = None
    answer: HandshakeResponse | None = None

    async def read_cursor() -> None:
        try:
            authority.append(await sync.cursor(tenant, device_id))
        except ApiError as exc:
            log.warning("sync-service cursor unreadable", extra={"error": exc.message[:200]})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_cursor)
        try:
            answer = await sync.handshake(tenant, device_id, request)
        except ApiError as exc:
            failure = exc
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise _stay_offline(services, failure)
    assert answer is not None
    return answer, authority[0] if authority else None


def _stay_offline(services: Services, failure: ApiError) -> ApiError:
    """sync-service refused or failed the handshake (F-13): the desktop stays offline and
    retries in 30 s. A refusal (4xx) is passed on as it is."""
    outcome = {
        Code.UPSTREAM_TIMEOUT: "upstream_timeout",
        Code.SCHEMA_DRIFT: "schema_drift",
        Code.UPSTREAM_UNAVAILABLE: "upstream_unavailable",
    }.get(failure.code, "rejected")
    sync_instruments(services.metrics).handshakes.labels(outcome).inc()
    if not isinstance(failure, UpstreamFailure):
        return failure
    log.warning("sync handshake failed; desktop stays offline", extra={"error": failure.message})
    return ApiError(
        failure.code,
        f"sync-service unavailable ({failure.kind}): stay offline and retry the handshake in "
        f"{RETRY_OFFLINE_S} s",
        headers={"Retry-After": str(RETRY_OFFLINE_S)},
    )


def _note_divergence(
    services: Services, principal: Principal, cached: CachedCursor | None, authority: int | None
) -> None:
    """F-35: the cached cursor differs from sync-service's; count and log it (the actor resets)."""
    if cached is None or authority is None or cached.cursor == authority:
        return
    direction = "behind" if cached.cursor < authority else "ahead"
    sync_instruments(services.metrics).divergences.labels(direction).inc()
    log.warning(
        "sync cursor cache diverged from sync-service; resetting to the authoritative cursor",
        extra={
            "tenant": principal.tenant,
            "deviceId": principal.device_id,
            "cachedCursor": cached.cursor,
            "authoritativeCursor": authority,
            "direction": direction,
        },
    )


async def _record_handshake(
    services: Services, principal: Principal, command: CompleteHandshake
) -> bool | None:
    """Whether the cache was reset; ``None`` when the handshake could not be recorded — it is
    answered anyway: the desktop can sync, and the next handshake compares again."""
    try:
        ack = await services.actors.ask(device(principal.tenant, principal.device_id), command)
    except (ActorError, SystemNotRunning) as exc:
        log.warning("sync handshake not recorded", extra={"error": str(exc)[:300]})
        return None
    assert isinstance(ack, CursorAck)
    return ack.changed


# --- offline-queue hint ------------------------------------------------------------------------


@api.route(
    f"{BASE}/offline-queue/hint",
    "POST",
    summary="Store the informational `OfflineActionQueueHint`: how many actions the desktop "
    "queued while offline and since when (the desktop owns the queue)",
    tag="sync",
    body=QueueHintBody,
    response=QueueHint,
    auth="read",
    errors=ACTOR_ERRORS,
)
async def queue_hint(services: Services, *, principal: Principal) -> Response:
    body = await decode_body(QueueHintBody)
    _own_device(principal, body.device_id)
    oldest = body.oldest_queued_at
    if oldest is not None and (oldest - datetime.now(UTC)).total_seconds() > CLOCK_SKEW_S:
        raise ApiError(Code.VALIDATION_FAILED, "oldestQueuedAt: in the future")
    command = RecordQueueHint(
        queued_actions=body.queued_actions,
        oldest_queued_at=oldest,
        operator_id=principal.operator_id,
    )
    meters = sync_instruments(services.metrics).hints
    ack = await _ask(
        services, principal, command, "hint not stored; retry", meters.labels("failed")
    )
    meters.labels("stored").inc()
    status = ack.status
    assert status is not None and status.hint_at is not None
    return _json(
        QueueHint(
            device_id=principal.device_id,
            queued_actions=status.queued_actions or 0,
            oldest_queued_at=status.oldest_queued_at,
            recorded_at=status.hint_at,
        )
    )


# --- helpers -----------------------------------------------------------------------------------


def _own_device(principal: Principal, device_id: str) -> None:
    """The auth chain compared the body's/query's ``deviceId`` with the token's ``did`` before
    the strict decode; this is the same check on the decoded value."""
    if device_id != principal.device_id:
        raise ApiError(Code.DEVICE_MISMATCH, "deviceId is not this session's device")


async def _read_cursor(services: Services, principal: Principal) -> CachedCursor | None:
    reads = sync_instruments(services.metrics).reads
    try:
        cached, source = await services.sync_cursors.read(principal.tenant, principal.device_id)
    except DatabaseUnavailable:
        reads.labels("unavailable").inc()
        raise
    reads.labels(source).inc()
    return cached


def _in_range(cursor: int) -> int | None:
    """sync-service's cursor if it fits the BFF's (0 ≤ cursor < 10^18, a Postgres bigint)."""
    return cursor if 0 <= cursor < 10**MAX_CURSOR_DIGITS else None


def _view(device_id: str, cached: CachedCursor | None) -> SyncCursor:
    if cached is None:
        return SyncCursor(device_id=device_id, cursor=None)
    return SyncCursor(
        device_id=device_id,
        cursor=str(cached.cursor),
        updated_at=cached.at,
        source=_SOURCES.get(cached.source or ""),
    )


async def _ask(
    services: Services, principal: Principal, command: object, failed: str, failures: Counter
) -> CursorAck:
    """Ask the device's actor; its failure is counted and is the contract's error for it."""
    try:
        answer = await services.actors.ask(device(principal.tenant, principal.device_id), command)
    except ActorError as exc:
        failures.inc()
        raise ApiError(code_for_actor_error(exc), failed) from None
    except SystemNotRunning:
        failures.inc()
        raise ApiError(Code.SERVICE_UNAVAILABLE, failed) from None
    assert isinstance(answer, CursorAck)
    return answer
