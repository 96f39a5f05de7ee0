"""Simulated reservation-service: arrivals, departures, in-house, no-shows, check-in/out.

Check-out also creates the room's checkout-clean task (housekeeping.task.created.v1), as the
real services do through their own events.
"""

from __future__ import annotations

from datetime import date, timedelta

from ops.sim.context import Sim, conflict, date_param, not_found
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.housekeeping import HousekeepingTask
from schemas.upstream.property import Room
from schemas.upstream.reservation import (
    CheckInRequest,
    CheckOutRequest,
    Reservation,
    ReservationList,
)

BASE = "/reservation/v1/tenants/{tenantId}/properties/{propertyId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/arrivals", lambda r: arrivals(sim, r))
    router.add("GET", BASE + "/departures", lambda r: departures(sim, r))
    router.add("GET", BASE + "/in-house", lambda r: in_house(sim, r))
    router.add("GET", BASE + "/no-shows", lambda r: no_shows(sim, r))
    router.add("GET", BASE + "/reservations/{reservationId}", lambda r: get_one(sim, r))
    router.add("POST", BASE + "/reservations/{reservationId}/check-in", lambda r: check_in(sim, r))
    router.add(
        "POST", BASE + "/reservations/{reservationId}/check-out", lambda r: check_out(sim, r)
    )


def _listing(ps: PropertyState, items: list[Reservation], day: date) -> Response:
    return Response(
        200, ReservationList(property_id=ps.id, date=day, items=items, total=len(items))
    )


async def arrivals(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    items = [
        ps.reservations[r]
        for r in ps.by_arrival.get(day, ())
        if ps.reservations[r].status != "cancelled"
    ]
    return _listing(ps, items, day)


async def departures(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    items = [
        ps.reservations[r]
        for r in ps.by_departure.get(day, ())
        if ps.reservations[r].status not in ("cancelled", "no_show")
    ]
    return _listing(ps, items, day)


async def in_house(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    return _listing(ps, [ps.reservations[r] for r in ps.in_house], ps.today())


async def no_shows(sim: Sim, request: Request) -> Response:
    """Guests due the day before ``date`` (default today) who never arrived."""
    ps = sim.property(request)
    night = date_param(request, ps) - timedelta(days=1)
    items = [
        ps.reservations[r]
        for r in ps.by_arrival.get(night, ())
        if ps.reservations[r].status == "no_show"
    ]
    return _listing(ps, items, night)


def reservation_of(ps: PropertyState, request: Request) -> Reservation:
    res = ps.reservations.get(request.params["reservationId"])
    if res is None:
        raise not_found("reservation")
    return res


async def get_one(sim: Sim, request: Request) -> Response:
    return Response(200, reservation_of(sim.property(request), request))


def _pick_room(ps: PropertyState, res: Reservation, wanted: str | None) -> Room:
    if wanted is not None:
        room = ps.rooms.get(wanted)
        if room is None:
            raise HttpError(400, "VALIDATION_FAILED", "roomId: no such room")
        if room.room_type != res.room_type:
            raise conflict(f"room {room.number} is not a {res.room_type}", "ROOM_NOT_AVAILABLE")
        candidates = [room]
    else:
        preferred = [ps.rooms[i] for i in (res.room_id, ps.planned_room.get(res.id)) if i]
        candidates = preferred + ps.rooms_of_type(res.room_type)
    for room in candidates:
        if not room.occupied and not room.out_of_order:
            return room
    raise conflict("no vacant room of this type", "ROOM_NOT_AVAILABLE")


async def check_in(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    res = reservation_of(ps, request)
    body: CheckInRequest = request.decode(CheckInRequest)
    today = ps.today()
    if res.status != "booked":
        raise conflict(f"reservation is {res.status}")
    if not today - timedelta(days=1) <= res.arrival_date <= today:
        raise conflict("check-in is only possible on the arrival date")
    room = _pick_room(ps, res, body.room_id)
    room.occupied = True
    res.status, res.room_id, res.room_number = "checked_in", room.id, room.number
    res.checked_in_at = utc_now()
    ps.in_house[res.id] = None
    sim.emit("melmastoon.reservation.checked_in.v1", _event(ps, res, body.operator_id))
    return Response(200, res)


async def check_out(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    res = reservation_of(ps, request)
    body: CheckOutRequest = request.decode(CheckOutRequest)
    if res.status != "checked_in":
        raise conflict(f"reservation is {res.status}")
    res.status, res.checked_out_at = "checked_out", utc_now()
    ps.in_house.pop(res.id, None)
    sim.emit("melmastoon.reservation.checked_out.v1", _event(ps, res, body.operator_id))
    if res.room_id:
        room = ps.rooms[res.room_id]
        room.occupied, room.housekeeping_status = False, "dirty"
        _checkout_task(sim, ps, room)
    return Response(200, res)


def _checkout_task(sim: Sim, ps: PropertyState, room: Room) -> None:
    today, now = ps.today(), utc_now()
    for task in ps.tasks.values():
        if (
            task.room_id == room.id
            and task.date == today
            and task.kind == "checkout_clean"
            and task.status not in ("done", "inspected")
        ):
            return
    task = HousekeepingTask(
        id=ps.new_id("hkt"),
        property_id=ps.id,
        room_id=room.id,
        room_number=room.number,
        date=today,
        kind="checkout_clean",
        status="pending",
        priority="normal",
        assignee_id=None,
        assignee_name=None,
        notes=None,
        created_at=now,
        updated_at=now,
    )
    ps.tasks[task.id] = task
    sim.emit(
        "melmastoon.housekeeping.task.created.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "taskId": task.id,
            "roomId": room.id,
            "roomNumber": room.number,
            "kind": task.kind,
            "status": task.status,
            "occurredAt": iso(now),
        },
    )


def _event(ps: PropertyState, res: Reservation, operator_id: str) -> dict[str, object]:
    return {
        "tenantId": ps.tenant_id,
        "propertyId": ps.id,
        "reservationId": res.id,
        "confirmationNumber": res.confirmation_number,
        "roomId": res.room_id,
        "roomNumber": res.room_number,
        "status": res.status,
        "operatorId": operator_id,
        "vip": res.guest.vip,
        "occurredAt": iso(utc_now()),
    }
