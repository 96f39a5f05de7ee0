"""The simulated iam-service's state: signing keys (JWKS, rotation), enrolled devices, DPoP-bound
sessions and refresh tokens, single-use step-up attestations, disabled operators."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException

from ops.sim.config import SimConfig
from ops.sim.dpop import ReplayCache
from schemas.upstream.iam import (
    AccessTokenClaims,
    AttestationClaims,
    Confirmation,
    Jwk,
    Jwks,
    SessionInfo,
    SessionStatus,
    StepUpAction,
)
from schemas.upstream.tenant import Operator


class TokenInvalid(Exception):
    """A token this iam did not sign, or expired, or of the wrong type."""


class SigningKeys:
    """ES256 keys; the newest signs, older ones stay in the JWKS until dropped (rotation)."""

    def __init__(self) -> None:
        self._keys: list[jwk.JWK] = []
        self.rotate(retain_previous=False)

    @property
    def current_kid(self) -> str:
        return str(self._keys[0]["kid"])

    def rotate(self, *, retain_previous: bool) -> str:
        key = jwk.JWK.generate(kty="EC", crv="P-256")
        key_dict = key.export_private(as_dict=True)
        key_dict["kid"] = key.thumbprint()
        new = jwk.JWK(**key_dict)
        self._keys = [new, *(self._keys[:2] if retain_previous else [])]
        return self.current_kid

    def drop_previous(self) -> None:
        """Keep only the current key (what a reset leaves: one key, still the same one)."""
        self._keys = self._keys[:1]

    def jwks(self) -> Jwks:
        out = []
        for key in self._keys:
            public = key.export_public(as_dict=True)
            out.append(
                Jwk(
                    kty="EC",
                    kid=str(public["kid"]),
                    crv=str(public["crv"]),
                    x=str(public["x"]),
                    y=str(public["y"]),
                )
            )
        return Jwks(keys=out)

    def sign(self, claims: msgspec.Struct | dict[str, Any], typ: str) -> str:
        key = self._keys[0]
        token = jwt.JWT(
            header={"alg": "ES256", "kid": key["kid"], "typ": typ},
            claims=msgspec.json.encode(claims).decode(),
        )
        token.make_signed_token(key)
        return str(token.serialize())

    def verify(self, raw: str, typ: str) -> dict[str, Any]:
        """Signature by a key in the JWKS, ``typ`` and ``exp`` (no leeway) checked."""
        try:
            parsed = jwt.JWT()
            parsed.deserialize(raw)  # parse only, to read the kid
            header = parsed.token.jose_header
            kid = header.get("kid") if isinstance(header, dict) else None
            key = next((k for k in self._keys if k["kid"] == kid), None)
            if key is None or header.get("typ") != typ or header.get("alg") != "ES256":
                raise TokenInvalid("unknown key or wrong token type")
            checked = jwt.JWT(
                jwt=raw, key=key, algs=["ES256"], check_claims={"exp": None}, expected_type="JWS"
            )
            claims: dict[str, Any] = msgspec.json.decode(checked.claims)
        except (JWException, ValueError, TypeError) as exc:
            raise TokenInvalid(type(exc).__name__) from None
        if claims.get("exp", 0) <= time.time():
            raise TokenInvalid("expired")
        return claims


@dataclass
class Device:
    id: str
    tenant_id: str
    name: str
    jkt: str
    enrolled_at: datetime


@dataclass
class Session:
    id: str
    tenant_id: str
    operator_id: str
    device_id: str
    jkt: str
    issued_at: datetime
    expires_at: datetime
    status: SessionStatus = "active"
    revoked_at: datetime | None = None
    reason: str | None = None

    def info(self) -> SessionInfo:
        status: SessionStatus = self.status
        if status == "active" and self.expires_at <= datetime.now(UTC):
            status = "expired"
        return SessionInfo(
            session_id=self.id,
            tenant_id=self.tenant_id,
            operator_id=self.operator_id,
            device_id=self.device_id,
            status=status,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            revoked_at=self.revoked_at,
            reason=self.reason,
        )


@dataclass
class IamState:
    config: SimConfig
    keys: SigningKeys = field(default_factory=SigningKeys)
    devices: dict[str, Device] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    refresh: dict[str, str] = field(default_factory=dict)  # sha256(refresh token) → session id
    # sha256(rotated refresh token) → session id: one presented again is reuse (theft)
    used_refresh: dict[str, str] = field(default_factory=dict)
    used_attestations: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)  # operator ids
    replay: ReplayCache = field(default_factory=ReplayCache)

    def reset(self) -> None:
        """Forget devices, sessions and attestations. The current signing key survives a reset
        (BFFs keep their cached JWKS valid); keys retained by rotations are dropped."""
        self.keys.drop_previous()
        self.devices.clear()
        self.sessions.clear()
        self.refresh.clear()
        self.used_refresh.clear()
        self.used_attestations.clear()
        self.disabled.clear()
        self.replay.clear()

    def enroll(self, tenant_id: str, name: str, jkt: str) -> Device:
        device = Device(f"dev-{secrets.token_hex(8)}", tenant_id, name, jkt, datetime.now(UTC))
        self.devices[device.id] = device
        return device

    def open_session(self, operator: Operator, device: Device) -> tuple[Session, str]:
        now = datetime.now(UTC)
        session = Session(
            id=f"ses-{secrets.token_hex(8)}",
            tenant_id=operator.tenant_id,
            operator_id=operator.id,
            device_id=device.id,
            jkt=device.jkt,
            issued_at=now,
            expires_at=datetime.fromtimestamp(now.timestamp() + self.config.refresh_ttl_s, UTC),
        )
        self.sessions[session.id] = session
        return session, self.new_refresh_token(session)

    def new_refresh_token(self, session: Session) -> str:
        token = f"rt_{secrets.token_urlsafe(32)}"
        self.refresh[_digest(token)] = session.id
        return token

    def peek_refresh_token(self, token: str) -> Session | None:
        sid = self.refresh.get(_digest(token))
        return self.sessions.get(sid) if sid else None

    def take_refresh_token(self, token: str) -> Session | None:
        """Refresh tokens rotate: each one is good once, and is remembered as used."""
        digest = _digest(token)
        sid = self.refresh.pop(digest, None)
        if sid is None:
            return None
        self.used_refresh[digest] = sid
        return self.sessions.get(sid)

    def used_refresh_token(self, token: str) -> Session | None:
        """The session of a refresh token that was already rotated (None: never issued)."""
        sid = self.used_refresh.get(_digest(token))
        return self.sessions.get(sid) if sid else None

    def access_token(self, session: Session, operator: Operator) -> str:
        return self.keys.sign(self.access_claims(session, operator), "at+jwt")

    def access_claims(self, session: Session, operator: Operator) -> AccessTokenClaims:
        now = int(time.time())
        return AccessTokenClaims(
            iss=self.config.issuer,
            aud=self.config.audience,
            sub=operator.id,
            tid=operator.tenant_id,
            pids=list(operator.property_ids),
            role=operator.role,
            did=session.device_id,
            sid=session.id,
            cnf=Confirmation(jkt=session.jkt),
            iat=now,
            exp=now + self.config.access_ttl_s,
            jti=uuid.uuid4().hex,
        )

    def attestation(self, session: Session, action: StepUpAction) -> str:
        now = int(time.time())
        claims = AttestationClaims(
            iss=self.config.issuer,
            aud=self.config.audience,
            sub=session.operator_id,
            tid=session.tenant_id,
            did=session.device_id,
            sid=session.id,
            act=action,
            iat=now,
            exp=now + self.config.attestation_ttl_s,
            jti=uuid.uuid4().hex,
        )
        return self.keys.sign(claims, "step-up+jwt")

    def revoke(self, session: Session, reason: str) -> bool:
        """Mark revoked; False when it was not active (nothing to announce)."""
        if session.status != "active":
            return False
        session.status = "signed_out" if reason == "sign_out" else "revoked"
        session.revoked_at = datetime.now(UTC)
        session.reason = reason
        return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
