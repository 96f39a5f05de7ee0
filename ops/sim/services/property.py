"""Simulated property-service: property metadata (with its local date), room types, rooms."""

from __future__ import annotations

from ops.sim.context import Sim, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState
from schemas.upstream.property import Property, PropertyList, RoomList

BASE = "/property/v1/tenants/{tenantId}/properties"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_properties(sim, r))
    router.add("GET", BASE + "/{propertyId}", lambda r: get_property(sim, r))
    router.add("GET", BASE + "/{propertyId}/rooms", lambda r: rooms(sim, r))


def describe(ps: PropertyState) -> Property:
    s = ps.seed
    return Property(
        id=s.id,
        tenant_id=s.tenant_id,
        name=s.name,
        time_zone=s.time_zone,
        currency=s.currency,
        country_code=s.country_code,
        floors=s.floors,
        room_count=len(ps.rooms),
        room_types=ps.room_types,
        check_in_time="14:00",
        check_out_time="11:00",
        local_date=ps.today(),
    )


async def list_properties(sim: Sim, request: Request) -> Response:
    tenant_id = request.params["tenantId"]
    if tenant_id not in sim.world.tenants:
        raise not_found("tenant")
    items = [describe(p) for p in sim.world.properties.values() if p.tenant_id == tenant_id]
    return Response(200, PropertyList(items=items))


async def get_property(sim: Sim, request: Request) -> Response:
    return Response(200, describe(sim.property(request)))


async def rooms(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    floor = request.query.get("floor")
    items = [r for r in ps.rooms.values() if floor is None or str(r.floor) == floor]
    return Response(200, RoomList(property_id=ps.id, items=items))
