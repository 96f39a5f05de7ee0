"""Simulated iam-service: enrolment, DPoP-bound sign-in/refresh, revocation, step-up, JWKS.

Refresh tokens are bound to the device key and rotate; one presented again after its rotation
revokes its whole session (OAuth 2.0 Security BCP, refresh token reuse detection), announced as
``melmastoon.iam.session.revoked.v1`` with reason ``refresh_reuse``. Besides the desktop's own
refresh (a proof for iam's URL), trusted services refresh on behalf of a key they verified
(``/iam/v1/service/...``: the BFF, API contract §2).

Errors use the common envelope with OAuth-style codes (``invalid_dpop_proof``, ``invalid_grant``,
``invalid_credentials``, ``invalid_device``, ``user_disabled``, ``invalid_token``,
``invalid_mfa_code``; on the service refresh also ``key_mismatch`` and
``refresh_token_reused``); DPoP failures also send
``WWW-Authenticate: DPoP error="invalid_dpop_proof"``.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Literal

from jwcrypto import jwk
from jwcrypto.common import JWException

from ops.sim import catalog
from ops.sim.context import Sim, not_found
from ops.sim.dpop import DpopError, Proof, verify_proof
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.identity import Session, TokenInvalid
from ops.sim.world import iso
from schemas.upstream.iam import (
    EnrollRequest,
    EnrollResponse,
    KeyRefreshRequest,
    RefreshRequest,
    RefreshTokenInfo,
    RevokeRequest,
    SignInRequest,
    StepUpRequest,
    StepUpResponse,
    StepUpVerifyRequest,
    StepUpVerifyResponse,
    TokenResponse,
)
from schemas.upstream.tenant import Operator

DPOP_CHALLENGE = 'DPoP error="invalid_dpop_proof", algs="ES256 ES384 EdDSA PS256"'


def register(router: Router, sim: Sim) -> None:
    router.add("POST", "/iam/v1/devices/enroll", lambda r: enroll(sim, r))
    router.add("POST", "/iam/v1/sessions", lambda r: sign_in(sim, r))
    router.add("POST", "/iam/v1/sessions/refresh", lambda r: refresh(sim, r))
    router.add(
        "POST", "/iam/v1/service/refresh-tokens/introspect", lambda r: service_introspect(sim, r)
    )
    router.add("POST", "/iam/v1/service/sessions/refresh", lambda r: service_refresh(sim, r))
    router.add("GET", "/iam/v1/sessions/{sessionId}", lambda r: session_info(sim, r))
    router.add("POST", "/iam/v1/sessions/{sessionId}/revoke", lambda r: revoke(sim, r))
    router.add("POST", "/iam/v1/step-up", lambda r: step_up(sim, r))
    router.add("POST", "/iam/v1/step-up/verify", lambda r: verify_step_up(sim, r))
    router.add("GET", "/iam/.well-known/jwks.json", lambda r: jwks(sim, r))


def request_url(sim: Sim, request: Request) -> str:
    """The URL the client addressed (for ``htu``): SIM_PUBLIC_URL if set, else from Host."""
    base = sim.config.public_url or f"http://{request.header('host') or '127.0.0.1'}"
    return base + request.path


def check_proof(sim: Sim, request: Request, access_token: str | None = None) -> Proof:
    try:
        return verify_proof(
            request.header("dpop"),
            method=request.method,
            url=request_url(sim, request),
            replay=sim.iam.replay,
            window_s=sim.config.dpop_window_s,
            access_token=access_token,
        )
    except DpopError as exc:
        raise HttpError(
            401, "invalid_dpop_proof", str(exc), {"WWW-Authenticate": DPOP_CHALLENGE}
        ) from None


async def enroll(sim: Sim, request: Request) -> Response:
    body: EnrollRequest = request.decode(EnrollRequest)
    if body.tenant_id not in sim.world.tenants:
        raise HttpError(400, "invalid_tenant", "tenantId: unknown tenant")
    try:
        key = jwk.JWK(**body.public_jwk)
    except (JWException, ValueError, TypeError):
        raise HttpError(400, "invalid_jwk", "publicJwk: not a JWK") from None
    if key.is_symmetric or key.has_private or key.get("kty") not in {"EC", "OKP", "RSA"}:
        raise HttpError(400, "invalid_jwk", "publicJwk: must be a public asymmetric key")
    device = sim.iam.enroll(body.tenant_id, body.device_name, str(key.thumbprint()))
    return Response(200, EnrollResponse(device_id=device.id))


def _operator(sim: Sim, operator_id: str) -> Operator:
    op = sim.world.operators.get(operator_id)
    if op is None:
        raise HttpError(401, "invalid_grant", "operator no longer exists")
    if operator_id in sim.iam.disabled:
        raise HttpError(403, "user_disabled", "operator is disabled")
    return op


async def sign_in(sim: Sim, request: Request) -> Response:
    proof = check_proof(sim, request)
    body: SignInRequest = request.decode(SignInRequest)
    device = sim.iam.devices.get(body.device_id)
    if device is None or device.tenant_id != body.tenant_id:
        raise HttpError(401, "invalid_device", "device is not enrolled for this tenant")
    if not hmac.compare_digest(device.jkt, proof.jkt):
        raise HttpError(
            401,
            "invalid_dpop_proof",
            "proof key is not the enrolled device key",
            {"WWW-Authenticate": DPOP_CHALLENGE},
        )
    op = sim.world.operator_by_username(body.tenant_id, body.username)
    if op is None or not hmac.compare_digest(
        body.password.encode(), catalog.DEMO_PASSWORD.encode()
    ):
        raise HttpError(401, "invalid_credentials", "unknown user or wrong password")
    _operator(sim, op.id)
    session, refresh_token = sim.iam.open_session(op, device)
    return Response(200, _tokens(sim, session, op, refresh_token))


def _tokens(sim: Sim, session: Session, op: Operator, refresh_token: str) -> TokenResponse:
    return TokenResponse(
        access_token=sim.iam.access_token(session, op),
        refresh_token=refresh_token,
        expires_in=sim.config.access_ttl_s,
        session_id=session.id,
    )


async def refresh(sim: Sim, request: Request) -> Response:
    """The desktop's own refresh: a proof for this URL, made with the session's key."""
    proof = check_proof(sim, request)
    body: RefreshRequest = request.decode(RefreshRequest)
    return Response(200, _rotate(sim, body.refresh_token, proof.jkt, service=False))


async def service_introspect(sim: Sim, request: Request) -> Response:
    """Whose is this refresh token, for a caller holding key ``jkt``? Spends nothing."""
    body: KeyRefreshRequest = request.decode(KeyRefreshRequest)
    return Response(200, inspect_refresh_token(sim, body.refresh_token, body.jkt))


async def service_refresh(sim: Sim, request: Request) -> Response:
    """A trusted service (the BFF) rotates a refresh token on behalf of the device key ``jkt``
    whose proof it verified; no proof comes here."""
    body: KeyRefreshRequest = request.decode(KeyRefreshRequest)
    return Response(200, _rotate(sim, body.refresh_token, body.jkt, service=True))


def inspect_refresh_token(sim: Sim, token: str, jkt: str) -> RefreshTokenInfo:
    """The state of ``token`` for a caller holding key ``jkt``. The key is checked first: a
    caller with another key learns nothing and, since the token is useless without the key,
    cannot end the session by replaying an old one. A rotated token presented with the right
    key is reuse: the session is revoked (and announced) before answering."""
    session = sim.iam.peek_refresh_token(token)
    reused = session is None
    if session is None:
        session = sim.iam.used_refresh_token(token)
    if session is None:
        return RefreshTokenInfo(active=False, state="unknown")
    if not hmac.compare_digest(session.jkt.encode(), jkt.encode()):
        return RefreshTokenInfo(active=False, state="key_mismatch")
    ids = {
        "session_id": session.id,
        "tenant_id": session.tenant_id,
        "operator_id": session.operator_id,
        "device_id": session.device_id,
    }
    if reused:
        revoke_session(sim, session, "refresh_reuse")
        return RefreshTokenInfo(active=False, state="reused", **ids)
    if session.info().status != "active":
        return RefreshTokenInfo(active=False, state="session_ended")
    if session.operator_id in sim.iam.disabled or session.operator_id not in sim.world.operators:
        return RefreshTokenInfo(active=False, state="disabled")
    return RefreshTokenInfo(active=True, state="ok", **ids)


def _rotate(sim: Sim, token: str, jkt: str, *, service: bool) -> TokenResponse:
    info = inspect_refresh_token(sim, token, jkt)
    if not info.active:
        raise _refusal(info, service=service)
    session = sim.iam.take_refresh_token(token)  # the same task introspected it: still there
    if session is None:
        raise HttpError(401, "invalid_grant", "refresh token invalid, used, or session ended")
    op = _operator(sim, session.operator_id)
    return _tokens(sim, session, op, sim.iam.new_refresh_token(session))


def _refusal(info: RefreshTokenInfo, *, service: bool) -> HttpError:
    if info.state == "key_mismatch":
        if service:
            return HttpError(401, "key_mismatch", "refresh token is bound to another key")
        return HttpError(
            401,
            "invalid_dpop_proof",
            "proof key is not the session's key",
            {"WWW-Authenticate": DPOP_CHALLENGE},
        )
    if info.state == "reused" and service:
        return HttpError(401, "refresh_token_reused", "refresh token reused; session revoked")
    if info.state == "disabled":
        return HttpError(403, "user_disabled", "operator is disabled")
    return HttpError(401, "invalid_grant", "refresh token invalid, used, or session ended")


async def session_info(sim: Sim, request: Request) -> Response:
    session = sim.iam.sessions.get(request.params["sessionId"])
    if session is None:
        raise not_found("session")
    return Response(200, session.info())


async def revoke(sim: Sim, request: Request) -> Response:
    session = sim.iam.sessions.get(request.params["sessionId"])
    if session is None:
        raise not_found("session")
    body: RevokeRequest = request.decode(RevokeRequest)
    revoke_session(sim, session, body.reason)
    return Response(200, session.info())


def revoke_session(sim: Sim, session: Session, reason: str) -> None:
    """Revoke and announce ``melmastoon.iam.session.revoked.v1`` (only the first time)."""
    if sim.iam.revoke(session, reason):
        sim.emit(
            "melmastoon.iam.session.revoked.v1",
            {
                "tenantId": session.tenant_id,
                "sessionId": session.id,
                "operatorId": session.operator_id,
                "deviceId": session.device_id,
                "reason": reason,
                "revokedAt": _iso(session.revoked_at),
            },
        )


def disable_operator(sim: Sim, op: Operator) -> list[str]:
    """Disable, end its sessions, announce ``melmastoon.iam.user.disabled.v1``."""
    sim.iam.disabled.add(op.id)
    op.status = "disabled"
    ended = [
        s
        for s in sim.iam.sessions.values()
        if s.operator_id == op.id and sim.iam.revoke(s, "user_disabled")
    ]
    sim.emit(
        "melmastoon.iam.user.disabled.v1",
        {
            "tenantId": op.tenant_id,
            "operatorId": op.id,
            "username": op.username,
            "sessionIds": [s.id for s in ended],
            "deviceIds": [s.device_id for s in ended],
            "disabledAt": _iso(datetime.now(UTC)),
        },
    )
    return [s.id for s in ended]


def enable_operator(sim: Sim, op: Operator) -> None:
    sim.iam.disabled.discard(op.id)
    op.status = "active"


async def step_up(sim: Sim, request: Request) -> Response:
    scheme, _, access_token = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "dpop" or not access_token:
        raise HttpError(
            401,
            "invalid_token",
            "Authorization: DPoP <access token> required",
            {"WWW-Authenticate": 'DPoP algs="ES256 ES384 EdDSA PS256"'},
        )
    try:
        claims = sim.iam.keys.verify(access_token, "at+jwt")
    except TokenInvalid:
        raise HttpError(401, "invalid_token", "access token invalid or expired") from None
    proof = check_proof(sim, request, access_token=access_token)
    session = sim.iam.sessions.get(str(claims.get("sid")))
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not hmac.compare_digest(jkt, proof.jkt):
        raise HttpError(
            401,
            "invalid_dpop_proof",
            "proof key does not match cnf.jkt",
            {"WWW-Authenticate": DPOP_CHALLENGE},
        )
    if session is None or session.info().status != "active":
        raise HttpError(401, "invalid_token", "session ended")
    _operator(sim, session.operator_id)
    body: StepUpRequest = request.decode(StepUpRequest)
    if not hmac.compare_digest(body.code.encode(), catalog.STEP_UP_CODE.encode()):
        raise HttpError(401, "invalid_mfa_code", "wrong step-up code")
    token = sim.iam.attestation(session, body.action)
    return Response(
        200, StepUpResponse(attestation_token=token, expires_in=sim.config.attestation_ttl_s)
    )


async def verify_step_up(sim: Sim, request: Request) -> Response:
    """attestStepUp for the BFF: valid once, for that operator, device and action only."""
    body: StepUpVerifyRequest = request.decode(StepUpVerifyRequest)
    try:
        claims = sim.iam.keys.verify(body.attestation_token, "step-up+jwt")
    except TokenInvalid as exc:
        reason: Literal["expired", "invalid"] = "expired" if str(exc) == "expired" else "invalid"
        return Response(200, StepUpVerifyResponse(valid=False, reason=reason))
    jti, sid = str(claims.get("jti")), str(claims.get("sid"))
    if jti in sim.iam.used_attestations:
        return Response(200, StepUpVerifyResponse(valid=False, reason="used", session_id=sid))
    matches = (
        claims.get("sub") == body.operator_id
        and claims.get("did") == body.device_id
        and claims.get("act") == body.action
    )
    session = sim.iam.sessions.get(sid)
    if not matches or session is None or session.info().status != "active":
        return Response(200, StepUpVerifyResponse(valid=False, reason="mismatch", session_id=sid))
    sim.iam.used_attestations.add(jti)
    return Response(200, StepUpVerifyResponse(valid=True, reason="ok", session_id=sid))


async def jwks(sim: Sim, request: Request) -> Response:
    return Response(200, sim.iam.keys.jwks(), {"Cache-Control": "max-age=60"})


def _iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None
