"""property-service: property metadata, room types and rooms."""

from __future__ import annotations

from datetime import date
from typing import Literal

from schemas.upstream.common import Wire

HousekeepingStatus = Literal["clean", "dirty", "inspected"]


class RoomType(Wire):
    code: str
    name: str
    max_occupancy: int
    base_rate_minor: int
    count: int


class Property(Wire):
    id: str
    tenant_id: str
    name: str
    time_zone: str
    currency: str
    country_code: str
    floors: int
    room_count: int
    room_types: list[RoomType]
    check_in_time: str
    check_out_time: str
    local_date: date  # "today" in the property's time zone


class PropertyList(Wire):
    items: list[Property]


class Room(Wire):
    id: str
    number: str
    floor: int
    room_type: str
    housekeeping_status: HousekeepingStatus
    occupied: bool
    out_of_order: bool


class RoomList(Wire):
    property_id: str
    items: list[Room]
