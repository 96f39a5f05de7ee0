"""reservation-service: arrivals, departures, in-house guests, check-in and check-out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire

ReservationStatus = Literal["booked", "checked_in", "checked_out", "no_show", "cancelled"]
LoyaltyTier = Literal["none", "silver", "gold", "platinum"]
Channel = Literal["direct", "ota", "corporate", "group", "walk_in"]


class Guest(Wire):
    id: str
    first_name: str
    last_name: str
    vip: bool
    loyalty_tier: LoyaltyTier
    country_code: str


class Reservation(Wire):
    id: str
    tenant_id: str
    property_id: str
    confirmation_number: str
    status: ReservationStatus
    guest: Guest
    room_type: str
    room_id: str | None
    room_number: str | None
    arrival_date: date
    departure_date: date
    nights: int
    adults: int
    children: int
    rate_minor: int
    currency: str
    channel: Channel
    eta: str | None
    special_requests: list[str]
    folio_id: str
    checked_in_at: datetime | None = None
    checked_out_at: datetime | None = None


class ReservationList(Wire):
    property_id: str
    date: date | None
    items: list[Reservation]
    total: int


class CheckInRequest(Wire):
    operator_id: Annotated[str, msgspec.Meta(min_length=1)]
    room_id: str | None = None


class CheckOutRequest(Wire):
    operator_id: Annotated[str, msgspec.Meta(min_length=1)]
