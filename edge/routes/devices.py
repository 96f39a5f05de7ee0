"""Device session lifecycle: token refresh, sign-out, heartbeat."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

import msgspec
from quart import Response, request

from actors.address import device
from actors.device import CloseSession, HeartbeatAck, RecordHeartbeat
from actors.errors import ActorError, SystemNotRunning
from edge.api import Api, decode_body, request_id
from edge.assembly import Services
from edge.auth.chain import load_body
from edge.auth.principal import Principal
from edge.auth.refresh import RefreshTokenReused, SessionRef, refresh_tokens
from edge.errors import ApiError, Code, code_for_actor_error
from edge.redis_tier import TierUnavailable
from schemas.devices import (
    HeartbeatRequest,
    HeartbeatResponse,
    RefreshRequest,
    SignedOut,
    TokenPair,
)
from schemas.sync import cursor_value

log = logging.getLogger("bff.routes.devices")
api = Api()
BASE = "/bff/backoffice/v1"
JSON = "application/json; charset=utf-8"
_encoder = msgspec.json.Encoder()
CLOCK_SKEW = timedelta(minutes=5)  # a device's clock may run this far ahead of ours


def _json(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, content_type=JSON)


@api.route(
    f"{BASE}/auth/refresh",
    "POST",
    summary="Rotate the device's tokens. `DPoP`: a proof for this URL (htm POST, htu under "
    "BFF_PUBLIC_URL, no ath). `Authorization: DPoP <old access token>` is optional and may have "
    "expired. `X-App-Version` is required. iam rotates the refresh token on behalf of the proven "
    "key; a refresh token presented again after its rotation ends the whole session",
    tag="auth",
    body=RefreshRequest,
    response=TokenPair,
    proof=True,
    errors=(
        Code.DPOP_INVALID,
        Code.SESSION_EXPIRED,
        Code.TENANT_SUSPENDED,
        Code.SYNC_VERSION_BLOCKED,
        Code.VALIDATION_FAILED,
        Code.RATE_LIMITED,
        Code.UPSTREAM_UNAVAILABLE,
        Code.UPSTREAM_TIMEOUT,
        Code.SCHEMA_DRIFT,
    ),
)
async def refresh(services: Services) -> Response:
    # Read the (bounded) body before any check can answer: a response sent while the body is
    # still unread makes the server drop the connection under the client's next request.
    await load_body()

    async def refresh_token() -> str:
        return (await decode_body(RefreshRequest)).refresh_token

    try:
        tokens = await refresh_tokens(
            services.auth, services.upstreams.iam, refresh_token, services.refresh_throttle
        )
    except RefreshTokenReused as reused:
        await _revoke_reused(services, reused.session)
        raise
    return _json(TokenPair(**msgspec.structs.asdict(tokens)))


async def _revoke_reused(services: Services, session: SessionRef) -> None:
    """Close the session of a reused refresh token through its device's actor (revocation
    marker for every instance, ``session.closed.v1``, the device's stream told). If the actor
    cannot, this process still rejects the session; iam's revocation event closes it later."""
    command = CloseSession(session_id=session.session_id, reason="refresh_reuse")
    try:
        await services.actors.ask(device(session.tenant, session.device_id), command)
    except (ActorError, SystemNotRunning, msgspec.ValidationError) as exc:
        services.auth.sessions.revoked.add(session.tenant, session.session_id)
        log.warning(
            "reused refresh token: session not closed by its actor",
            extra={"sessionId": session.session_id, "error": str(exc)},
        )


@api.route(
    f"{BASE}/auth/sign-out",
    "POST",
    summary="Sign the device out: revoke at iam, close the session, end the device's stream",
    tag="auth",
    response=SignedOut,
    auth="signout",
    errors=(Code.SERVICE_UNAVAILABLE,),
)
async def sign_out(services: Services, principal: Principal) -> Response:
    command = CloseSession(session_id=principal.session_id, reason="sign_out")
    closed: ActorError | None = None
    try:
        await services.actors.ask(device(principal.tenant, principal.device_id), command)
    except ActorError as exc:  # e.g. Postgres down: revoke anyway, the record follows later
        closed = exc
        with contextlib.suppress(TierUnavailable):  # the marker every instance reads
            await services.sessions.close(
                principal.tenant, principal.session_id, principal.device_id
            )
    iam_revoked = True
    try:
        await services.upstreams.iam.revoke(principal.session_id, "sign_out")
    except ApiError:  # the BFF already rejects the session; iam's own TTL ends it there
        iam_revoked = False
    if closed is not None and not iam_revoked:
        raise ApiError(code_for_actor_error(closed), "could not close the session; retry")
    return _json(
        SignedOut(session_id=principal.session_id, signed_out=True, iam_revoked=iam_revoked)
    )


@api.route(
    f"{BASE}/devices/{{deviceId}}/heartbeat",
    "POST",
    summary="Device heartbeat (every 60 s): updates DeviceSyncStatus — last seen, app "
    "version, and the sync fields: `syncCursor` (moves the cursor forward only), "
    "`queuedActions` (the offline-queue hint), `onlineSince`; telemetry is sampled",
    tag="devices",
    body=HeartbeatRequest,
    response=HeartbeatResponse,
    auth="read",
    idempotency="accepted",
    errors=(Code.OVERLOADED, Code.SERVICE_UNAVAILABLE),
)
async def heartbeat(services: Services, principal: Principal, deviceId: str) -> Response:
    body = await decode_body(HeartbeatRequest)
    if body.app_version is not None and body.app_version != principal.app_version:
        raise ApiError(Code.VALIDATION_FAILED, "appVersion: differs from X-App-Version")
    if body.online_since is not None and body.online_since > datetime.now(UTC) + CLOCK_SKEW:
        raise ApiError(Code.VALIDATION_FAILED, "onlineSince: in the future")
    command_id = request.headers.get("Idempotency-Key") or request_id()
    command = RecordHeartbeat(
        command_id=command_id[:128],
        app_version=principal.app_version,
        operator_id=principal.operator_id,
        sync_cursor=None if body.sync_cursor is None else cursor_value(body.sync_cursor),
        queued_actions=body.queued_actions,
        online_since=body.online_since,
    )
    try:
        ack: HeartbeatAck = await services.actors.ask(device(principal.tenant, deviceId), command)
    except ActorError as exc:
        raise ApiError(code_for_actor_error(exc), "heartbeat not recorded; retry") from None
    return _json(
        HeartbeatResponse(
            device_id=deviceId,
            heartbeat_count=ack.heartbeat_count,
            duplicate=ack.duplicate,
            server_time=datetime.now(UTC),
        )
    )
