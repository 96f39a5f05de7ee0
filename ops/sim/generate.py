"""Deterministic demo data: the same seed and the same local date give the same world.

Each property draws from its own ``random.Random(f"{seed}:{property}")`` so properties are
independent of each other; everything is placed relative to the property's local "today".
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ops.sim import catalog
from ops.sim.world import PropertyState, Staff, World, local_today, utc_now
from schemas.upstream.ai import Suggestion, SuggestionCategory, SuggestionStatus
from schemas.upstream.housekeeping import HousekeepingTask, TaskKind, TaskStatus
from schemas.upstream.maintenance import WorkOrder, WorkOrderCategory, WorkOrderStatus
from schemas.upstream.notification import Alert, AlertCategory, AlertStatus, Severity
from schemas.upstream.pricing import RoomTypeRate
from schemas.upstream.property import Room, RoomType
from schemas.upstream.reservation import (
    Channel,
    Guest,
    LoyaltyTier,
    Reservation,
    ReservationStatus,
)
from schemas.upstream.tenant import Operator, OperatorPreferences, Tenant, TenantStatus, Theme

PAST_DAYS = 35
FUTURE_DAYS = 35
OOO_WINDOW = range(-3, 4)  # out-of-order rooms are blocked around today

WORK_ORDER_TEMPLATES: tuple[tuple[WorkOrderCategory, str], ...] = (
    ("plumbing", "Leaking tap in bathroom"),
    ("hvac", "AC not cooling"),
    ("electrical", "Bedside lamp flickering"),
    ("furniture", "Wardrobe door off its hinge"),
    ("it", "Smart TV stuck on boot screen"),
    ("plumbing", "Slow shower drain"),
    ("safety", "Smoke detector chirping"),
    ("hvac", "Noisy fan coil unit"),
    ("electrical", "Keycard slot not powering room"),
    ("other", "Balcony door lock stiff"),
    ("furniture", "Desk chair broken"),
    ("it", "Wi-Fi access point offline on floor"),
    ("plumbing", "Toilet running continuously"),
    ("hvac", "Thermostat unresponsive"),
)
ALERT_TEMPLATES: tuple[tuple[AlertCategory, Severity, str, str], ...] = (
    (
        "overbooking",
        "critical",
        "Overbooked: Junior Suite tonight",
        "Junior Suite is oversold by 1 for tonight; consider an upgrade or a walk.",
    ),
    (
        "payment",
        "warning",
        "Card declined at pre-authorisation",
        "Pre-authorisation failed for an arriving guest; collect another payment method.",
    ),
    (
        "maintenance",
        "warning",
        "Room out of order past its return date",
        "A room blocked for maintenance was due back in service yesterday.",
    ),
    (
        "housekeeping",
        "info",
        "Rush room requested",
        "An early arrival asked for a room by 11:00; prioritise its checkout clean.",
    ),
    (
        "guest",
        "warning",
        "VIP arriving with special requests",
        "A platinum guest arrives today and asked for an anniversary setup.",
    ),
    (
        "security",
        "critical",
        "Key encoder offline",
        "The front-desk key encoder stopped answering; keys cannot be cut.",
    ),
    ("system", "info", "Channel manager sync delayed", "OTA inventory sync is 10 minutes behind."),
    ("payment", "info", "Folio balance above limit", "An in-house folio exceeds the credit limit."),
    ("guest", "info", "Late checkout requested", "A guest asked to check out at 14:00."),
    ("system", "warning", "Night audit finished late", "Night audit completed 40 minutes late."),
)
SUGGESTION_TEMPLATES: tuple[tuple[SuggestionCategory, str, str], ...] = (
    ("pricing", "Raise Deluxe rate for Saturday", "Demand is 18% above forecast for Saturday."),
    ("pricing", "Open a length-of-stay discount midweek", "Tuesday and Wednesday are soft."),
    ("upsell", "Offer suite upgrade to arriving VIP", "A VIP guest arrives to an open suite."),
    ("upsell", "Offer late checkout to departing guests", "Departures are light today."),
    ("housekeeping", "Reassign two stayovers to floor 3", "Floor 3 attendant is ahead of plan."),
    ("housekeeping", "Prioritise early-arrival rooms", "Three guests asked for early check-in."),
    ("maintenance", "Schedule HVAC filter change", "Fan coil faults rose this week."),
    ("maintenance", "Inspect recurring leak rooms", "Two rooms reported leaks twice."),
    ("staffing", "Add one front-desk agent at 15:00", "Arrival peak forecast at 15:00-17:00."),
    ("staffing", "Release one evening attendant", "Evening turndowns are below plan."),
    ("guest_experience", "Send welcome note to returning guests", "Five repeat guests arrive."),
    ("guest_experience", "Follow up on yesterday's complaint", "A complaint is unresolved."),
)


def build_world(seed: int, fleet_tenants: int = 0) -> World:
    """Build all tenants' data for today (each property's own local date), plus
    ``fleet_tenants`` generated ones (:func:`catalog.fleet_seeds`).

    Ids, names, statuses, dates and amounts depend only on the seed and the local dates;
    timestamps are placed relative to the current minute.
    """
    now = utc_now().replace(second=0, microsecond=0)
    fleet = catalog.fleet_seeds(fleet_tenants)
    all_tenants, all_properties = catalog.TENANTS + fleet[0], catalog.PROPERTIES + fleet[1]
    all_operators = catalog.OPERATORS + fleet[2]
    tenants = {t.id: _tenant(t, all_properties) for t in all_tenants}
    operators = {o.id: _operator(o) for o in all_operators}
    preferences = {o.id: _default_preferences(o.id, now) for o in all_operators}
    properties = {
        p.id: build_property(seed, p, local_today(p.time_zone), now) for p in all_properties
    }
    return World(seed, tenants, operators, preferences, properties)


def _tenant(seed: catalog.TenantSeed, properties: Iterable[catalog.PropertySeed]) -> Tenant:
    pids = [p.id for p in properties if p.tenant_id == seed.id]
    status: TenantStatus = "suspended" if seed.status == "suspended" else "active"
    return Tenant(
        id=seed.id,
        name=seed.name,
        status=status,
        app_version_floor=catalog.APP_VERSION_FLOOR,
        locale=seed.locale,
        property_ids=pids,
        theme=Theme(id=f"theme-{seed.id}", version=1),
    )


def _operator(seed: catalog.OperatorSeed) -> Operator:
    return Operator(
        id=seed.id,
        tenant_id=seed.tenant_id,
        username=seed.username,
        display_name=seed.display_name,
        role=seed.role,
        property_ids=list(seed.property_ids),
        status="active",
    )


def _default_preferences(operator_id: str, now: datetime) -> OperatorPreferences:
    return OperatorPreferences(
        operator_id=operator_id,
        layout="default",
        density="comfortable",
        columns={"arrivals": ["guest", "room", "eta", "nights", "vip"]},
        shortcuts={"ctrl+k": "search", "ctrl+i": "check-in"},
        version=1,
        updated_at=now,
    )


def build_property(
    seed: int, ps: catalog.PropertySeed, today: date, now: datetime
) -> PropertyState:
    rng = random.Random(f"{seed}:{ps.id}:{today.isoformat()}")
    gen = _PropertyGenerator(rng, ps, today, now)
    return gen.build()


class _PropertyGenerator:
    def __init__(self, rng: random.Random, ps: catalog.PropertySeed, today: date, now: datetime):
        self.rng = rng
        self.ps = ps
        self.today = today
        self.now = now
        self.tz = ZoneInfo(ps.time_zone)
        self.counter = 0
        self.state = PropertyState(seed=ps, anchor=today, room_types=[])

    def build(self) -> PropertyState:
        self._rooms()
        self._rates()
        ooo = self._out_of_order_rooms()
        self._reservations(ooo)
        self._demo_highlights()
        self._tasks()
        self._work_orders(ooo)
        self._alerts()
        self._suggestions()
        self.state.staff = [
            Staff(f"stf-{self.ps.id}-{i + 1}", n) for i, n in enumerate(catalog.STAFF_NAMES)
        ]
        return self.state

    # -- helpers ---------------------------------------------------------------------------
    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.ps.id}-{self.counter:05d}"

    def _day(self, offset: int) -> date:
        return self.today + timedelta(days=offset)

    def _at(self, offset: int, hour: int, minute: int = 0) -> datetime:
        local = datetime.combine(self._day(offset), time(hour, minute), self.tz)
        return min(local.astimezone(UTC), self.now)

    def _ago(self, max_minutes: int, min_minutes: int = 1) -> datetime:
        return self.now - timedelta(minutes=self.rng.randint(min_minutes, max_minutes))

    # -- rooms and rates ---------------------------------------------------------------------
    def _rooms(self) -> None:
        total = self.ps.floors * self.ps.rooms_per_floor
        counts = [round(total * share) for *_, share in catalog.ROOM_TYPES]
        counts[0] += total - sum(counts)
        types = [
            code for (code, *_), n in zip(catalog.ROOM_TYPES, counts, strict=True) for _ in range(n)
        ]
        for (code, name, occ, base, _), n in zip(catalog.ROOM_TYPES, counts, strict=True):
            self.state.room_types.append(
                RoomType(
                    code=code,
                    name=name,
                    max_occupancy=occ,
                    base_rate_minor=base * 100 * self.ps.rate_scale,
                    count=n,
                )
            )
        for i, room_type in enumerate(types):
            floor, index = divmod(i, self.ps.rooms_per_floor)
            number = f"{floor + 1}{index + 1:02d}"
            self.state.rooms[f"room-{self.ps.id}-{number}"] = Room(
                id=f"room-{self.ps.id}-{number}",
                number=number,
                floor=floor + 1,
                room_type=room_type,
                housekeeping_status="clean",
                occupied=False,
                out_of_order=False,
            )

    def _rates(self) -> None:
        for offset in range(-PAST_DAYS - 7, FUTURE_DAYS + 14):
            day = self._day(offset)
            weekend = 1.2 if day.weekday() in (4, 5) else 1.0
            demand = self.rng.uniform(0.9, 1.12)
            rates = []
            for rt in self.state.room_types:
                bar = int(round(rt.base_rate_minor * weekend * demand, -2))
                rates.append(
                    RoomTypeRate(
                        room_type=rt.code,
                        bar_minor=bar,
                        floor_minor=int(bar * 0.8),
                        ceiling_minor=int(bar * 1.5),
                        closed_to_arrival=self.rng.random() < 0.03,
                    )
                )
            self.state.rates[day] = rates

    def _out_of_order_rooms(self) -> list[Room]:
        rooms = self.rng.sample(list(self.state.rooms.values()), 2)
        for room in rooms:
            room.out_of_order = True
        return rooms

    # -- reservations ----------------------------------------------------------------------
    def _reservations(self, ooo: list[Room]) -> None:
        blocked = {r.id for r in ooo}
        for room in self.state.rooms.values():
            day = -PAST_DAYS + self.rng.randint(0, 3)
            while day <= FUTURE_DAYS:
                nights = self.rng.choices((1, 2, 3, 4, 5, 7), (25, 30, 20, 12, 8, 5))[0]
                overlaps_block = (
                    room.id in blocked and day < OOO_WINDOW.stop and day + nights > OOO_WINDOW.start
                )
                if overlaps_block or self.rng.random() > self._start_probability(day):
                    day += 1
                    continue
                self._reservation(room, day, nights)
                day += nights

    def _demo_highlights(self) -> None:
        """Whatever the dice said, today's board has VIP arrivals, a VIP in house and no-shows."""
        by_arrival = self.state.by_arrival
        arrivals = [self.state.reservations[r] for r in by_arrival.get(self.today, [])]
        in_house = [self.state.reservations[r] for r in self.state.in_house]
        yesterday = [self.state.reservations[r] for r in by_arrival.get(self._day(-1), [])]
        for group, wanted in ((arrivals, 2), (in_house, 1)):
            for res in group[: max(0, wanted - sum(r.guest.vip for r in group))]:
                res.guest.vip, res.guest.loyalty_tier = True, "platinum"
        no_shows = [r for r in yesterday if r.status == "no_show"]
        for res in [r for r in yesterday if r.status == "checked_in"][: 2 - len(no_shows)]:
            self._make_no_show(res)

    def _make_no_show(self, res: Reservation) -> None:
        self.state.in_house.pop(res.id, None)
        res.status, res.room_id, res.room_number, res.checked_in_at = "no_show", None, None, None
        room = self.state.rooms[self.state.planned_room[res.id]]
        room.occupied = any(
            self.state.reservations[r].room_id == room.id for r in self.state.in_house
        )
        for night in nights_between(res.arrival_date, res.departure_date):
            self.state.sold[night][res.room_type] -= 1
            self.state.revenue[night] -= res.rate_minor

    def _start_probability(self, offset: int) -> float:
        if offset <= 7:
            return 0.62
        return max(0.2, 0.62 - (offset - 7) * 0.015)

    def _reservation(self, room: Room, a: int, nights: int) -> None:
        rng = self.rng
        d = a + nights
        status = self._status(a, d)
        if status == "checked_in" and room.occupied:
            status = "booked"  # today's guest is still in the room (due out)
        assigned = status in ("checked_in", "checked_out") or (
            status == "booked"
            and ((a == 0 and rng.random() < 0.6) or (a == 1 and rng.random() < 0.3))
        )
        channel: Channel = rng.choices(
            ("direct", "ota", "corporate", "group", "walk_in"), (35, 40, 15, 7, 3)
        )[0]
        bar = next(
            r.bar_minor for r in self.state.rates[self._day(a)] if r.room_type == room.room_type
        )
        rate = int(round(bar * (0.9 if channel == "corporate" else 1.0), -2))
        rid = self._next("rsv")
        res = Reservation(
            id=rid,
            tenant_id=self.ps.tenant_id,
            property_id=self.ps.id,
            confirmation_number=f"{self.ps.id[-6:].upper().replace('-', '')}{self.counter:06d}",
            status=status,
            guest=self._guest(),
            room_type=room.room_type,
            room_id=room.id if assigned else None,
            room_number=room.number if assigned else None,
            arrival_date=self._day(a),
            departure_date=self._day(d),
            nights=nights,
            adults=rng.choice((1, 2, 2, 2, 3)),
            children=rng.choice((0, 0, 0, 1, 2)),
            rate_minor=rate,
            currency=self.ps.currency,
            channel=channel,
            eta=f"{rng.randint(12, 22):02d}:{rng.choice((0, 15, 30, 45)):02d}"
            if a >= 0 and rng.random() < 0.8
            else None,
            special_requests=rng.sample(catalog.SPECIAL_REQUESTS, rng.choice((0, 0, 1, 2))),
            folio_id=f"fol-{rid}",
            checked_in_at=self._checked_in_at(a)
            if status in ("checked_in", "checked_out")
            else None,
            checked_out_at=self._checked_out_at(d) if status == "checked_out" else None,
        )
        self.state.planned_room[rid] = room.id
        self.state.index_reservation(res)
        if status not in ("cancelled", "no_show"):
            for n in range(nights):
                night = self._day(a + n)
                sold = self.state.sold.setdefault(night, {})
                sold[room.room_type] = sold.get(room.room_type, 0) + 1
                self.state.revenue[night] = self.state.revenue.get(night, 0) + rate
        if status == "checked_in":
            room.occupied = True

    def _status(self, a: int, d: int) -> ReservationStatus:
        r = self.rng.random()
        if a > 0:
            return "cancelled" if r < 0.03 else "booked"
        if a == 0:
            return "checked_in" if r < 0.25 else "booked"
        if (a == -1 and r < 0.12) or (a < -1 and r < 0.03):
            return "no_show"
        if d > 0:
            return "checked_in"
        if d == 0:
            return "checked_out" if r < 0.4 else "checked_in"
        return "checked_out"

    def _checked_in_at(self, a: int) -> datetime:
        if a == 0:
            return self._ago(180, 5)
        return self._at(a, self.rng.randint(13, 22), self.rng.choice((5, 20, 35, 50)))

    def _checked_out_at(self, d: int) -> datetime:
        if d == 0:
            return self._ago(120, 5)
        return self._at(d, self.rng.randint(7, 11), self.rng.choice((0, 10, 25, 40)))

    def _guest(self) -> Guest:
        rng = self.rng
        vip = rng.random() < 0.08
        tier: LoyaltyTier = (
            rng.choice(("gold", "platinum"))
            if vip
            else rng.choices(("none", "silver", "gold", "platinum"), (60, 25, 12, 3))[0]
        )
        self.counter += 1
        return Guest(
            id=f"gst-{self.ps.id}-{self.counter:05d}",
            first_name=rng.choice(catalog.FIRST_NAMES),
            last_name=rng.choice(catalog.LAST_NAMES),
            vip=vip,
            loyalty_tier=tier,
            country_code=rng.choice(catalog.COUNTRIES),
        )

    # -- housekeeping ------------------------------------------------------------------------
    def _tasks(self) -> None:
        today = self.today
        occupant: dict[str, Reservation] = {}
        departed: set[str] = set()
        for rid in self.state.in_house:
            res = self.state.reservations[rid]
            if res.room_id:
                occupant[res.room_id] = res
        for rid in self.state.by_departure.get(today, []):
            res = self.state.reservations[rid]
            if res.status == "checked_out" and res.room_id:
                departed.add(res.room_id)
        for room in self.state.rooms.values():
            if room.out_of_order:
                continue
            guest = occupant.get(room.id)
            if room.id in departed and guest is None:
                self._task(
                    room,
                    "checkout_clean",
                    self._pick(
                        ("pending", "assigned", "in_progress", "done", "inspected"),
                        (30, 20, 20, 15, 15),
                    ),
                )
            elif guest is not None and guest.departure_date == today:
                self._task(room, "checkout_clean", "pending")
            elif guest is not None and self.rng.random() < 0.7:
                self._task(
                    room,
                    "stayover_service",
                    self._pick(
                        ("pending", "assigned", "in_progress", "done", "dnd"), (35, 20, 15, 22, 8)
                    ),
                )
            elif guest is None and self.rng.random() < 0.03:
                self._task(room, "deep_clean", self._pick(("pending", "assigned"), (1, 1)))
            if guest is not None and room.room_type == "STE":
                self._task(room, "turndown", "pending")
        self._cover_every_task_state()
        self._room_housekeeping_status(occupant)

    def _pick(self, values: tuple[TaskStatus, ...], weights: tuple[int, ...]) -> TaskStatus:
        return self.rng.choices(values, weights)[0]

    def _task(self, room: Room, kind: TaskKind, status: TaskStatus) -> None:
        staff = self.rng.randrange(len(catalog.STAFF_NAMES))
        has_assignee = status not in ("pending", "dnd")
        created = self._at(0, 7, self.rng.choice((0, 15, 30)))
        task = HousekeepingTask(
            id=self._next("hkt"),
            property_id=self.ps.id,
            room_id=room.id,
            room_number=room.number,
            date=self.today,
            kind=kind,
            status=status,
            priority="high" if kind == "checkout_clean" and self.rng.random() < 0.2 else "normal",
            assignee_id=f"stf-{self.ps.id}-{staff + 1}" if has_assignee else None,
            assignee_name=catalog.STAFF_NAMES[staff] if has_assignee else None,
            notes=None,
            created_at=created,
            updated_at=max(created, self._ago(240)),
        )
        self.state.tasks[task.id] = task

    def _cover_every_task_state(self) -> None:
        """A demo board shows every state; force the missing ones onto stayover tasks."""
        present = {t.status for t in self.state.tasks.values()}
        stayovers = [t for t in self.state.tasks.values() if t.kind == "stayover_service"]
        missing: list[TaskStatus] = [
            s
            for s in ("pending", "assigned", "in_progress", "done", "inspected", "dnd")
            if s not in present
        ]
        for task, status in zip(stayovers, missing, strict=False):
            task.status = status
            if status not in ("pending", "dnd") and task.assignee_id is None:
                task.assignee_id, task.assignee_name = f"stf-{self.ps.id}-1", catalog.STAFF_NAMES[0]

    def _room_housekeeping_status(self, occupant: dict[str, Reservation]) -> None:
        by_room = {
            t.room_id: t
            for t in self.state.tasks.values()
            if t.kind in ("checkout_clean", "stayover_service")
        }
        for room in self.state.rooms.values():
            task = by_room.get(room.id)
            if task is None:
                room.housekeeping_status = "inspected" if self.rng.random() < 0.6 else "clean"
            elif task.status == "inspected":
                room.housekeeping_status = "inspected"
            elif task.status == "done":
                room.housekeeping_status = "clean"
            else:
                room.housekeeping_status = "dirty"

    # -- maintenance, alerts, AI ----------------------------------------------------------------
    def _work_orders(self, ooo: list[Room]) -> None:
        statuses: tuple[WorkOrderStatus, ...] = (
            "open",
            "assigned",
            "in_progress",
            "on_hold",
            "resolved",
            "closed",
        )
        rooms = list(self.state.rooms.values())
        for i, (category, title) in enumerate(WORK_ORDER_TEMPLATES):
            blocking = ooo[i] if i < len(ooo) else None
            room = blocking or (self.rng.choice(rooms) if self.rng.random() < 0.85 else None)
            status = ("open", "in_progress")[i] if blocking else statuses[i % len(statuses)]
            created = self._ago(60 * 24 * 6, 30)
            wo = WorkOrder(
                id=self._next("wo"),
                property_id=self.ps.id,
                room_id=room.id if room else None,
                room_number=room.number if room else None,
                title=title,
                description=f"{title} (reported by front desk).",
                category=category,
                priority="urgent"
                if blocking
                else self.rng.choice(("low", "medium", "medium", "high")),
                status=status,
                blocks_room=blocking is not None,
                assignee_id=None if status == "open" else f"stf-{self.ps.id}-{1 + i % 8}",
                reported_by="opr-fd-demo" if self.ps.tenant_id == "tnt-demo" else "system",
                created_at=created,
                updated_at=max(created, self._ago(600)),
            )
            self.state.work_orders[wo.id] = wo

    def _alerts(self) -> None:
        statuses: tuple[AlertStatus, ...] = (
            ("open",) * 6 + ("acknowledged",) * 2 + ("resolved",) * 2
        )
        for (category, severity, title, message), status in zip(
            ALERT_TEMPLATES, statuses, strict=True
        ):
            raised = self._ago(60 * 36, 5)
            alert = Alert(
                id=self._next("alr"),
                tenant_id=self.ps.tenant_id,
                property_id=self.ps.id,
                severity=severity,
                category=category,
                title=title,
                message=message,
                status=status,
                source=_alert_source(category),
                raised_at=raised,
            )
            if status in ("acknowledged", "resolved"):
                alert.acknowledged_at = min(self.now, raised + timedelta(minutes=12))
                alert.acknowledged_by = (
                    "opr-fd-demo" if self.ps.tenant_id == "tnt-demo" else "system"
                )
            if status == "resolved":
                alert.resolved_at = min(self.now, raised + timedelta(minutes=55))
            self.state.alerts[alert.id] = alert

    def _suggestions(self) -> None:
        statuses: tuple[SuggestionStatus, ...] = ("open",) * 9 + ("accepted", "rejected", "expired")
        order = list(range(len(SUGGESTION_TEMPLATES)))
        self.rng.shuffle(order)
        for index, status in zip(order, statuses, strict=True):
            category, title, rationale = SUGGESTION_TEMPLATES[index]
            s = make_suggestion(
                self.state, self._next("sug"), category, title, rationale, self.rng, self.now
            )
            self.state.suggestions[s.id] = s
            s.status = status
            if status in ("accepted", "rejected"):
                s.decided_by, s.decided_at = "opr-gm-demo", self._ago(300)


def make_suggestion(
    state: PropertyState,
    sid: str,
    category: SuggestionCategory,
    title: str,
    rationale: str,
    rng: random.Random,
    now: datetime,
) -> Suggestion:
    created = now - timedelta(minutes=rng.randint(1, 60 * 20))
    impact = (
        rng.randint(50, 900) * 100 * state.seed.rate_scale
        if category in ("pricing", "upsell")
        else None
    )
    return Suggestion(
        id=sid,
        tenant_id=state.tenant_id,
        property_id=state.id,
        category=category,
        title=title,
        summary=f"{title}.",
        rationale=rationale,
        confidence=round(rng.uniform(0.55, 0.97), 2),
        impact_minor=impact,
        status="open",
        created_at=created,
        expires_at=created + timedelta(hours=rng.randint(12, 48)),
    )


def _alert_source(category: AlertCategory) -> str:
    return {
        "overbooking": "reservation",
        "payment": "billing",
        "maintenance": "maintenance",
        "housekeeping": "housekeeping",
        "guest": "reservation",
        "security": "lock",
        "system": "notification",
    }[category]


def nights_between(arrival: date, departure: date) -> Iterable[date]:
    day = arrival
    while day < departure:
        yield day
        day += timedelta(days=1)
