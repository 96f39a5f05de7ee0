"""The simulator's in-memory demo world: one :class:`PropertyState` per property plus tenant data.

Records are the upstream Structs themselves (``schemas.upstream``), so reads encode them directly
and every answer has exactly the contract's shape. Indexes make the hot reads O(1)/O(k).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ops.sim.catalog import PropertySeed
from schemas.upstream.ai import Suggestion
from schemas.upstream.billing import Folio
from schemas.upstream.housekeeping import HousekeepingTask
from schemas.upstream.lock import LockKey
from schemas.upstream.maintenance import WorkOrder
from schemas.upstream.notification import Alert
from schemas.upstream.pricing import RoomTypeRate
from schemas.upstream.property import Room, RoomType
from schemas.upstream.reservation import Reservation
from schemas.upstream.sync import DeviceCursor
from schemas.upstream.tenant import Operator, OperatorPreferences, Tenant


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` (how every timestamp goes on the wire)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_today(time_zone: str) -> date:
    """The real calendar date in a property's time zone ("time moves")."""
    return datetime.now(ZoneInfo(time_zone)).date()


@dataclass
class Staff:
    id: str
    name: str


@dataclass
class PropertyState:
    """Everything one property's domain services know. ``anchor`` is the local date the data was
    generated around; reads use the real local date, so the demo keeps working past midnight."""

    seed: PropertySeed
    anchor: date
    room_types: list[RoomType]
    rooms: dict[str, Room] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    by_arrival: dict[date, list[str]] = field(default_factory=dict)
    by_departure: dict[date, list[str]] = field(default_factory=dict)
    in_house: dict[str, None] = field(default_factory=dict)  # ordered set of reservation ids
    planned_room: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, HousekeepingTask] = field(default_factory=dict)
    work_orders: dict[str, WorkOrder] = field(default_factory=dict)
    folios: dict[str, Folio] = field(default_factory=dict)
    keys: dict[str, list[LockKey]] = field(default_factory=dict)
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    rates: dict[date, list[RoomTypeRate]] = field(default_factory=dict)
    sold: dict[date, dict[str, int]] = field(default_factory=dict)
    revenue: dict[date, int] = field(default_factory=dict)
    staff: list[Staff] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(9000))

    @property
    def id(self) -> str:
        return self.seed.id

    @property
    def tenant_id(self) -> str:
        return self.seed.tenant_id

    def today(self) -> date:
        return local_today(self.seed.time_zone)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.seed.id}-{next(self._ids):05d}"

    def rooms_of_type(self, room_type: str) -> list[Room]:
        return [r for r in self.rooms.values() if r.room_type == room_type]

    def index_reservation(self, res: Reservation) -> None:
        self.reservations[res.id] = res
        self.by_arrival.setdefault(res.arrival_date, []).append(res.id)
        self.by_departure.setdefault(res.departure_date, []).append(res.id)
        if res.status == "checked_in":
            self.in_house[res.id] = None


@dataclass
class World:
    """All tenants' demo data. Mutations live in :mod:`ops.sim.domain`."""

    seed: int
    tenants: dict[str, Tenant]
    operators: dict[str, Operator]
    preferences: dict[str, OperatorPreferences]
    properties: dict[str, PropertyState]
    cursors: dict[tuple[str, str], DeviceCursor] = field(default_factory=dict)

    def operator_by_username(self, tenant_id: str, username: str) -> Operator | None:
        for op in self.operators.values():
            if op.tenant_id == tenant_id and op.username == username:
                return op
        return None
