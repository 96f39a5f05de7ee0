"""MFA step-up for sensitive actions (lock key revoke, folio refund).

``X-MFA-Attestation`` is an iam-signed JWT (``typ`` ``step-up+jwt``). The BFF verifies it
against iam's JWKS first (edge/auth/tokens.py: only its canonical spelling, since an ES256
signature has 16 spellings that verify), requires it to name the caller's tenant, session,
operator and device and the action, then makes it single use (F-29): its identity — tenant
and ``jti``, never its text (anyone can turn an ECDSA signature ``(r, s)`` into its twin
``(r, n - s)``, which verifies too) — is claimed in the session tier with SET NX *before*
iam's attestStepUp is asked, so two concurrent uses, however spelt, cannot both pass. iam's
verdict must name the caller's session too. If iam cannot answer (F-2) the claim is released
and the action fails with a retryable UPSTREAM_UNAVAILABLE; nothing else is affected.
"""

from __future__ import annotations

import hashlib
import logging
import time

from quart import request

from edge.auth.principal import Principal
from edge.auth.tokens import KeySetUnavailable, TokenRejected, TokenVerifier
from edge.errors import ApiError, Code
from edge.metrics import Metrics
from edge.redis_tier import RedisTier, TierUnavailable
from edge.upstream.apis import IamApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from schemas.upstream.iam import AttestationClaims, StepUpAction

log = logging.getLogger("bff.auth.stepup")

CLAIM_TTL_S = 24 * 3600
MAX_ATTESTATION_BYTES = 4096


class StepUp:
    def __init__(
        self, iam: IamApi, session: RedisTier, metrics: Metrics, tokens: TokenVerifier
    ) -> None:
        self._iam = iam
        self._session = session
        self._metrics = metrics
        self._tokens = tokens

    async def require(self, principal: Principal, action: StepUpAction) -> AttestationClaims:
        """Pass (answering the attestation's verified claims: its ``jti`` identifies it in an
        audit) or raise the contract's MFA error."""
        token = (request.headers.get("X-MFA-Attestation") or "").strip()
        if not token:
            raise ApiError(Code.MFA_REQUIRED, f"{action} needs a step-up MFA attestation")
        if len(token) > MAX_ATTESTATION_BYTES:
            raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is not valid")
        attestation = await self._verified(token)
        _check_subject(attestation, principal, action)
        digest = hashlib.sha256(attestation.jti.encode()).hexdigest()
        claim = self._session.key(attestation.tid, "mfa-used", digest)
        try:
            fresh = await self._session.run(lambda r: r.set(claim, b"1", nx=True, ex=CLAIM_TTL_S))
        except TierUnavailable:
            raise ApiError(Code.CACHE_UNAVAILABLE, "cannot record attestation use") from None
        if not fresh:
            self._metrics.mfa_replay_blocked.inc()
            raise ApiError(Code.MFA_INVALID_OR_USED, "attestation was already used")
        try:
            verdict = await self._iam.attest_step_up(
                token, principal.operator_id, principal.device_id, action
            )
        except UpstreamRejected:
            raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is not valid") from None
        except UpstreamFailure as exc:
            await self._release(claim)
            log.warning("step-up verification unavailable", extra={"error": str(exc)})
            raise ApiError(
                Code.UPSTREAM_UNAVAILABLE, "MFA verification is unavailable; retry shortly"
            ) from None
        if not verdict.valid:
            if verdict.reason == "used":
                self._metrics.mfa_replay_blocked.inc()
            raise ApiError(Code.MFA_INVALID_OR_USED, f"attestation {verdict.reason}")
        if verdict.session_id is not None and verdict.session_id != principal.session_id:
            raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is for another session")
        return attestation

    async def _verified(self, token: str) -> AttestationClaims:
        try:
            return await self._tokens.attestation(token, now=time.time())
        except TokenRejected as exc:
            raise ApiError(Code.MFA_INVALID_OR_USED, f"attestation is not valid: {exc}") from None
        except KeySetUnavailable:
            raise ApiError(
                Code.UPSTREAM_UNAVAILABLE, "MFA verification is unavailable; retry shortly"
            ) from None

    async def _release(self, claim: str) -> None:
        try:
            await self._session.run(lambda r: r.delete(claim))
        except TierUnavailable:
            log.warning("attestation claim not released; the operator must step up again")


def _check_subject(
    attestation: AttestationClaims, principal: Principal, action: StepUpAction
) -> None:
    """The attestation was minted for this very session (tenant, session, operator, device)
    and action; checked before its use is claimed, so a mismatch burns nothing."""
    mine = (attestation.tid, attestation.sid, attestation.sub, attestation.did) == (
        principal.tenant,
        principal.session_id,
        principal.operator_id,
        principal.device_id,
    )
    if not mine:
        raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is for another session")
    if attestation.act != action:
        raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is for another action")
