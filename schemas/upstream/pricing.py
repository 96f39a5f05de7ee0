"""pricing-service: the rate snapshot (best available rate per room type) for a night."""

from __future__ import annotations

from datetime import date, datetime

from schemas.upstream.common import Wire


class RoomTypeRate(Wire):
    room_type: str
    bar_minor: int
    floor_minor: int
    ceiling_minor: int
    closed_to_arrival: bool


class RateSnapshot(Wire):
    property_id: str
    date: date
    currency: str
    rates: list[RoomTypeRate]
    updated_at: datetime
