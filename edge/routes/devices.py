"""Device session lifecycle: token refresh, sign-out, heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from quart import Response, request

from actors.device import CloseSession, HeartbeatAck, RecordHeartbeat
from actors.errors import ActorError, error_code
from actors.kinds import device
from edge.api import Api, decode_body, request_id
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.services import Services
from edge.upstream.errors import UpstreamRejected
from schemas.devices import (
    HeartbeatRequest,
    HeartbeatResponse,
    RefreshRequest,
    SignedOut,
    TokenPair,
)

api = Api()
BASE = "/bff/backoffice/v1"
JSON = "application/json; charset=utf-8"
_encoder = msgspec.json.Encoder()


def _json(body: msgspec.Struct, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status=status, content_type=JSON)


@api.route(
    f"{BASE}/auth/refresh",
    "POST",
    summary="Refresh the device's tokens at iam (the DPoP proof must target iam's refresh URL)",
    tag="auth",
    body=RefreshRequest,
    response=TokenPair,
    errors=(
        Code.DPOP_INVALID,
        Code.SESSION_EXPIRED,
        Code.UPSTREAM_UNAVAILABLE,
        Code.VALIDATION_FAILED,
    ),
)
async def refresh(services: Services) -> Response:
    proofs = request.headers.getlist("DPoP")
    if len(proofs) != 1 or not proofs[0].strip():
        raise ApiError(Code.DPOP_INVALID, "a DPoP proof for iam's refresh URL is required")
    body = await decode_body(RefreshRequest)
    assert services.upstreams is not None
    try:
        tokens = await services.upstreams.iam.refresh(body.refresh_token, proofs[0].strip())
    except UpstreamRejected as exc:
        if exc.status in (400, 401, 403):
            raise ApiError(Code.SESSION_EXPIRED, "refresh refused by iam; sign in again") from None
        raise
    return _json(TokenPair(**msgspec.structs.asdict(tokens)))


@api.route(
    f"{BASE}/auth/sign-out",
    "POST",
    summary="Sign the device out: revoke at iam, close the session, end the device's stream",
    tag="auth",
    response=SignedOut,
    auth="mutation",
    errors=(Code.SERVICE_UNAVAILABLE,),
)
async def sign_out(services: Services, principal: Principal) -> Response:
    assert services.actors is not None and services.upstreams is not None
    command = CloseSession(session_id=principal.session_id, reason="sign_out")
    try:
        await services.actors.ask(device(principal.tenant, principal.device_id), command)
    except ActorError as exc:
        raise ApiError(error_code(exc), "could not close the session; retry") from None
    iam_revoked = True
    try:
        await services.upstreams.iam.revoke(principal.session_id, "sign_out")
    except ApiError:  # the BFF already rejects the session; iam's own TTL ends it there
        iam_revoked = False
    return _json(
        SignedOut(session_id=principal.session_id, signed_out=True, iam_revoked=iam_revoked)
    )


@api.route(
    f"{BASE}/devices/{{deviceId}}/heartbeat",
    "POST",
    summary="Device heartbeat (every 60 s): updates DeviceSyncStatus; telemetry is sampled",
    tag="devices",
    body=HeartbeatRequest,
    response=HeartbeatResponse,
    auth="read",
    errors=(Code.OVERLOADED, Code.SERVICE_UNAVAILABLE),
)
async def heartbeat(services: Services, principal: Principal, deviceId: str) -> Response:
    body = await decode_body(HeartbeatRequest)
    assert services.actors is not None
    command_id = request.headers.get("Idempotency-Key") or request_id()
    command = RecordHeartbeat(
        command_id=command_id[:128], app_version=body.app_version, operator_id=principal.operator_id
    )
    try:
        ack: HeartbeatAck = await services.actors.ask(device(principal.tenant, deviceId), command)
    except ActorError as exc:
        raise ApiError(error_code(exc), "heartbeat not recorded; retry") from None
    return _json(
        HeartbeatResponse(
            device_id=deviceId,
            heartbeat_count=ack.heartbeat_count,
            duplicate=ack.duplicate,
            server_time=datetime.now(UTC),
        )
    )
