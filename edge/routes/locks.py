"""Door-lock keys (API contract §9): issue and revoke a reservation's room keys, proxied to
lock-integration-service (1200 ms, never retried: a key must not be cut twice).

Both are audited completely (FAILURE_MODES F-27, ``edge/mutations/proxy.py``): stream
``lock:<reservationId>`` holds every attempt (``lock.action_attempted.v1``: operator, device,
session, property, the MFA attestation's id, the Idempotency-Key) and its outcome
(``lock.action_proxied.v1``: success with the key ids, failure with its reason, ``unknown``
after a timeout), and refusals (scope, key, MFA) as ``refused`` outcomes. lock-integration down
(F-10) → 502 UPSTREAM_UNAVAILABLE, timeout → 504 UPSTREAM_TIMEOUT. Revoking needs a step-up
attestation for ``lock.revoke``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response

from edge.api import Api, decode_body
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.mutations.proxy import ERRORS, Mutation, fields_of, path_id, perform
from schemas.mutations import IssueKeyBody, KeyIssued, KeysRevoked, RevokeKeyBody
from schemas.upstream.lock import IssueKeyRequest, KeyList, RevokeKeysRequest

api = Api()
BASE = "/bff/backoffice/v1/locks"


@api.route(
    f"{BASE}/{{reservationId}}/issue-key",
    "POST",
    summary="Issue room keys to a checked-in reservation (lock-integration, 1200 ms, no retry). "
    "Every attempt and its outcome are audited in stream `lock:<reservationId>`",
    tag="locks",
    body=IssueKeyBody,
    response=KeyIssued,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def issue_key(services: Services, *, principal: Principal, reservationId: str) -> Response:
    rid = path_id("reservationId", reservationId)
    body = await decode_body(IssueKeyBody)
    mutation = Mutation(
        action="lock.issue_key",
        target=f"lock:{rid}",
        property_id=body.property_id,
        request=fields_of(body),
        audit_refusals=True,
    )
    request = IssueKeyRequest(
        operator_id=principal.operator_id, device_id=principal.device_id, key_count=body.key_count
    )
    if body.encoder_id is not None:
        request = msgspec.structs.replace(request, encoder_id=body.encoder_id)

    async def call(key: str | None) -> KeyList:
        return await services.upstreams.lock.issue(
            principal.tenant, body.property_id, rid, request, key
        )

    def render(keys: KeyList) -> tuple[msgspec.Struct, dict[str, Any]]:
        ids = [k.id for k in keys.items]
        issued = KeyIssued(
            reservation_id=keys.reservation_id,
            property_id=body.property_id,
            key_id=ids[0] if ids else "",
            keys=keys.items,
        )
        return issued, {"keyIds": ids}

    return await perform(services, principal, mutation, call, render)


@api.route(
    f"{BASE}/{{reservationId}}/revoke-key",
    "POST",
    summary="Revoke a reservation's active room keys (step-up MFA `lock.revoke`; "
    "lock-integration, 1200 ms, no retry). Every attempt, refusal and outcome is audited in "
    "stream `lock:<reservationId>`",
    tag="locks",
    body=RevokeKeyBody,
    response=KeysRevoked,
    auth="mutation",
    idempotency="required",
    mfa=True,
    errors=ERRORS,
)
async def revoke_key(services: Services, *, principal: Principal, reservationId: str) -> Response:
    rid = path_id("reservationId", reservationId)
    body = await decode_body(RevokeKeyBody)
    mutation = Mutation(
        action="lock.revoke_key",
        target=f"lock:{rid}",
        property_id=body.property_id,
        request=fields_of(body),
        mfa="lock.revoke",
        audit_refusals=True,
    )
    request = RevokeKeysRequest(
        operator_id=principal.operator_id, device_id=principal.device_id, reason=body.reason
    )

    async def call(key: str | None) -> KeyList:
        return await services.upstreams.lock.revoke(
            principal.tenant, body.property_id, rid, request, key
        )

    def render(keys: KeyList) -> tuple[msgspec.Struct, dict[str, Any]]:
        ids = [k.id for k in keys.items]
        named = body.key_id
        revoked = KeysRevoked(
            reservation_id=keys.reservation_id,
            property_id=body.property_id,
            revoked=keys.items,
            key_id=named,
            key_revoked=None if named is None else named in ids,
        )
        return revoked, {"keyIds": ids}

    return await perform(services, principal, mutation, call, render)
