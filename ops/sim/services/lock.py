"""Simulated lock-integration-service: issue and revoke room keys for a reservation."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from ops.sim.context import Sim, conflict
from ops.sim.http import Request, Response, Router
from ops.sim.services.reservation import reservation_of
from ops.sim.world import utc_now
from schemas.upstream.lock import IssueKeyRequest, KeyList, LockKey, RevokeKeysRequest

BASE = "/lock/v1/tenants/{tenantId}/properties/{propertyId}/reservations/{reservationId}/keys"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_keys(sim, r))
    router.add("POST", BASE, lambda r: issue(sim, r))
    router.add("POST", BASE + "/revoke", lambda r: revoke(sim, r))


async def list_keys(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    res = reservation_of(ps, request)
    return Response(200, KeyList(reservation_id=res.id, items=ps.keys.get(res.id, [])))


async def issue(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    res = reservation_of(ps, request)
    body: IssueKeyRequest = request.decode(IssueKeyRequest)
    if res.status != "checked_in" or not res.room_id or not res.room_number:
        raise conflict("keys are issued to checked-in reservations only")
    tz = ZoneInfo(ps.seed.time_zone)
    until = datetime.combine(res.departure_date, time(12, 0), tz).astimezone(UTC)
    now = utc_now()
    keys = ps.keys.setdefault(res.id, [])
    issued = []
    for _ in range(body.key_count):
        key = LockKey(
            id=ps.new_id("key"),
            reservation_id=res.id,
            room_id=res.room_id,
            room_number=res.room_number,
            status="active",
            encoder_id=body.encoder_id,
            issued_at=now,
            valid_until=until,
            issued_by=body.operator_id,
        )
        keys.append(key)
        issued.append(key)
    return Response(201, KeyList(reservation_id=res.id, items=issued))


async def revoke(sim: Sim, request: Request) -> Response:
    """Revoke every active key of the reservation (none active: an empty list)."""
    ps = sim.property(request)
    res = reservation_of(ps, request)
    body: RevokeKeysRequest = request.decode(RevokeKeysRequest)
    now = utc_now()
    revoked = []
    for key in ps.keys.get(res.id, []):
        if key.status == "active":
            key.status, key.revoked_at = "revoked", now
            key.revoked_by, key.revoke_reason = body.operator_id, body.reason
            revoked.append(key)
    return Response(200, KeyList(reservation_id=res.id, items=revoked))
