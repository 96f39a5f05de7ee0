"""MFA step-up for sensitive actions (lock key revoke, folio refund).

``X-MFA-Attestation`` is verified by iam's attestStepUp for this operator, device and action,
and is single use at the BFF too (F-29): its hash is claimed in the session tier with SET NX
*before* asking iam, so two concurrent uses cannot both pass. If iam cannot answer (F-2) the
claim is released and the action fails with a retryable UPSTREAM_UNAVAILABLE; nothing else is
affected.
"""

from __future__ import annotations

import hashlib
import logging

from quart import request

from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.metrics import Metrics
from edge.redis_tier import RedisTier, TierUnavailable
from edge.upstream.apis import IamApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from schemas.upstream.iam import StepUpAction

log = logging.getLogger("bff.auth.stepup")

CLAIM_TTL_S = 24 * 3600
MAX_ATTESTATION_BYTES = 4096


class StepUp:
    def __init__(self, iam: IamApi, session: RedisTier, metrics: Metrics) -> None:
        self._iam = iam
        self._session = session
        self._metrics = metrics

    async def require(self, principal: Principal, action: StepUpAction) -> None:
        token = (request.headers.get("X-MFA-Attestation") or "").strip()
        if not token:
            raise ApiError(Code.MFA_REQUIRED, f"{action} needs a step-up MFA attestation")
        if len(token) > MAX_ATTESTATION_BYTES:
            raise ApiError(Code.MFA_INVALID_OR_USED, "attestation is not valid")
        digest = hashlib.sha256(token.encode()).hexdigest()
        claim = self._session.key(principal.tenant, "mfa-used", digest)
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

    async def _release(self, claim: str) -> None:
        try:
            await self._session.run(lambda r: r.delete(claim))
        except TierUnavailable:
            log.warning("attestation claim not released; the operator must step up again")
