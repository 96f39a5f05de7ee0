"""Simulated pricing-service: best available rate per room type for a night."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from ops.sim.context import Sim, date_param
from ops.sim.http import Request, Response, Router
from schemas.upstream.pricing import RateSnapshot, RoomTypeRate

BASE = "/pricing/v1/tenants/{tenantId}/properties/{propertyId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/rates", lambda r: rates(sim, r))


async def rates(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    rows = ps.rates.get(day) or [
        RoomTypeRate(
            room_type=rt.code,
            bar_minor=rt.base_rate_minor,
            floor_minor=int(rt.base_rate_minor * 0.8),
            ceiling_minor=int(rt.base_rate_minor * 1.5),
            closed_to_arrival=False,
        )
        for rt in ps.room_types
    ]
    updated = datetime.combine(ps.anchor, time(3, 0), ZoneInfo(ps.seed.time_zone)).astimezone(UTC)
    return Response(
        200,
        RateSnapshot(
            property_id=ps.id, date=day, currency=ps.seed.currency, rates=rows, updated_at=updated
        ),
    )
