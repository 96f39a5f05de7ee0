"""inventory-service: room availability and occupancy for a night."""

from __future__ import annotations

from datetime import date

from schemas.upstream.common import Wire


class RoomTypeAvailability(Wire):
    room_type: str
    total: int
    out_of_order: int
    sold: int
    available: int


class Availability(Wire):
    property_id: str
    date: date
    total_rooms: int
    out_of_order: int
    sold: int
    available: int
    occupancy_pct: float
    by_room_type: list[RoomTypeAvailability]
