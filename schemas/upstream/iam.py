"""iam-service: device enrolment, DPoP-bound sessions, step-up MFA, the JWKS.

Access tokens are ES256 JWTs (header ``typ: at+jwt``, ``kid`` from the JWKS) whose claims are
:class:`AccessTokenClaims`; the BFF verifies them against ``GET {iam}/.well-known/jwks.json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from schemas.identifiers import Role
from schemas.upstream.common import Wire

StepUpAction = Literal["lock.revoke", "folio.refund"]
SessionStatus = Literal["active", "revoked", "signed_out", "expired"]
RevokeReason = Literal["sign_out", "admin", "security", "user_disabled", "replaced"]

ISSUER = "https://iam.melmastoon.internal"
AUDIENCE = "bff-backoffice-service"


class EnrollRequest(Wire):
    tenant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    device_name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    public_jwk: dict[str, Any]


class EnrollResponse(Wire):
    device_id: str


class SignInRequest(Wire):
    tenant_id: str
    device_id: str
    username: str
    password: str


class TokenResponse(Wire):
    """Answer of sign-in and refresh (contract §7: exactly these four fields)."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


class RefreshRequest(Wire):
    refresh_token: str


class KeyRefreshRequest(Wire):
    """Service-to-service refresh (the BFF for a device, API contract §2): the refresh token and
    the RFC 7638 thumbprint of the DPoP key the caller verified the device's proof with. iam
    refuses a refresh token bound to another key."""

    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    jkt: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


RefreshTokenState = Literal["ok", "unknown", "reused", "key_mismatch", "session_ended", "disabled"]


class RefreshTokenInfo(Wire, omit_defaults=True):
    """Answer of refresh-token introspection (RFC 7662 in spirit; nothing is spent). ``reused``:
    the token was already rotated, so iam has just revoked its whole session (OAuth 2.0
    Security BCP §4.14.2); the ids say which session, so that the caller can revoke it too.
    The ids are sent for ``ok`` and ``reused`` only (never to a caller holding another key)."""

    active: bool
    state: RefreshTokenState
    session_id: str | None = None
    tenant_id: str | None = None
    operator_id: str | None = None
    device_id: str | None = None


class SessionInfo(Wire):
    """``GET /v1/sessions/{id}`` (the "validate" call) and the answer of a revoke."""

    session_id: str
    tenant_id: str
    operator_id: str
    device_id: str
    status: SessionStatus
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    reason: str | None = None


class RevokeRequest(Wire):
    reason: RevokeReason = "sign_out"


class StepUpRequest(Wire):
    action: StepUpAction
    code: str


class StepUpResponse(Wire):
    attestation_token: str
    expires_in: int


class StepUpVerifyRequest(Wire):
    """attestStepUp: is this attestation good for this operator, device and action? Single use."""

    attestation_token: str
    operator_id: str
    device_id: str
    action: StepUpAction


class StepUpVerifyResponse(Wire):
    valid: bool
    reason: Literal["ok", "invalid", "expired", "used", "mismatch"]
    session_id: str | None = None


class Jwk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A public signing key (RFC 7517; members are not camelCased)."""

    kty: str
    kid: str
    use: str = "sig"
    alg: str = "ES256"
    crv: str = ""
    x: str = ""
    y: str = ""


class Jwks(msgspec.Struct, kw_only=True):
    keys: list[Jwk]


class Confirmation(msgspec.Struct, kw_only=True):
    jkt: str


class AccessTokenClaims(msgspec.Struct, kw_only=True):
    """Claims of an access token (JWT claim names, not camelCased)."""

    iss: str
    aud: str
    sub: str
    tid: str
    pids: list[str]
    role: Role
    did: str
    sid: str
    # Always present in tokens iam issues to devices; optional here so that a token without
    # it reaches the binding check and is refused as not DPoP-bound (DPOP_INVALID).
    cnf: Confirmation | None = None
    iat: int
    exp: int
    jti: str


class AttestationClaims(msgspec.Struct, kw_only=True):
    """Claims of a step-up attestation token (JWT, header ``typ: step-up+jwt``)."""

    iss: str
    aud: str
    sub: str
    tid: str
    did: str
    sid: str
    act: StepUpAction
    iat: int
    exp: int
    jti: str
