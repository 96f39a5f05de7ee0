"""Simulated analytics-service: occupancy, ADR and RevPAR for a night, with a 7-night trend."""

from __future__ import annotations

from datetime import date, timedelta

from ops.sim.context import Sim, date_param
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, utc_now
from schemas.upstream.analytics import KpiPoint, KpiSnapshot

BASE = "/analytics/v1/tenants/{tenantId}/properties/{propertyId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/kpis", lambda r: kpis(sim, r))


def _point(ps: PropertyState, day: date) -> tuple[KpiPoint, int, int, int]:
    available = sum(1 for r in ps.rooms.values() if not r.out_of_order)
    sold = sum(ps.sold.get(day, {}).values())
    revenue = ps.revenue.get(day, 0)
    point = KpiPoint(
        date=day,
        occupancy_pct=round(100 * sold / max(1, available), 1),
        adr_minor=revenue // sold if sold else 0,
        revpar_minor=revenue // max(1, available),
    )
    return point, sold, available, revenue


async def kpis(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    point, sold, available, revenue = _point(ps, day)
    trend = [_point(ps, day - timedelta(days=n))[0] for n in range(6, -1, -1)]
    return Response(
        200,
        KpiSnapshot(
            property_id=ps.id,
            date=day,
            currency=ps.seed.currency,
            occupancy_pct=point.occupancy_pct,
            adr_minor=point.adr_minor,
            revpar_minor=point.revpar_minor,
            rooms_sold=sold,
            rooms_available=available,
            room_revenue_minor=revenue,
            trend=trend,
            as_of=utc_now(),
        ),
    )
