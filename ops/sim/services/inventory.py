"""Simulated inventory-service: availability and occupancy for a night."""

from __future__ import annotations

from ops.sim.context import Sim, date_param
from ops.sim.http import Request, Response, Router
from schemas.upstream.inventory import Availability, RoomTypeAvailability

BASE = "/inventory/v1/tenants/{tenantId}/properties/{propertyId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/availability", lambda r: availability(sim, r))


async def availability(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    sold = ps.sold.get(day, {})
    rows = []
    for rt in ps.room_types:
        rooms = ps.rooms_of_type(rt.code)
        ooo = sum(1 for r in rooms if r.out_of_order)
        n_sold = sold.get(rt.code, 0)
        rows.append(
            RoomTypeAvailability(
                room_type=rt.code,
                total=len(rooms),
                out_of_order=ooo,
                sold=n_sold,
                available=max(0, len(rooms) - ooo - n_sold),
            )
        )
    total = sum(r.total for r in rows)
    ooo_total = sum(r.out_of_order for r in rows)
    sold_total = sum(r.sold for r in rows)
    sellable = max(1, total - ooo_total)
    return Response(
        200,
        Availability(
            property_id=ps.id,
            date=day,
            total_rooms=total,
            out_of_order=ooo_total,
            sold=sold_total,
            available=sum(r.available for r in rows),
            occupancy_pct=round(100 * sold_total / sellable, 1),
            by_room_type=rows,
        ),
    )
