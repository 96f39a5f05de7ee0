"""Pure render functions: upstream answers in, one widget's data out.

Every list is bounded and sorted on a total key (ties broken by id), so the same upstream
answers always render byte-identical widgets. Role-specific filtering (AI suggestion categories,
alert categories) happens here because the cache entry is per role anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from schemas import dashboard as d
from schemas.upstream import ai, analytics, billing, housekeeping, inventory, maintenance, pricing
from schemas.upstream import notification as notif
from schemas.upstream import property as prop
from schemas.upstream import reservation as rsv

TOP = 10  # rows in a dashboard list widget (the workbench has the full lists)
PRIORITY_ORDER = {"urgent": 0, "high": 1, "medium": 2, "normal": 2, "low": 3}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
OPEN_TASKS = ("pending", "assigned", "in_progress")
DONE_TASKS = ("done", "inspected")
OPEN_WORK = ("open", "assigned", "in_progress", "on_hold")
ROLE_SUGGESTIONS: dict[str, frozenset[str] | None] = {
    "front_desk": frozenset({"upsell", "guest_experience", "pricing"}),
    "housekeeping": frozenset({"housekeeping", "staffing"}),
    "maintenance": frozenset({"maintenance"}),
    "fnb_manager": frozenset({"upsell", "staffing", "guest_experience"}),
    "gm": None,  # everything
}
ROLE_ALERTS: dict[str, frozenset[str] | None] = {
    "front_desk": frozenset({"overbooking", "payment", "guest", "security", "system"}),
    "housekeeping": frozenset({"housekeeping", "guest", "system"}),
    "maintenance": frozenset({"maintenance", "security", "system"}),
    "fnb_manager": frozenset({"guest", "payment", "system"}),
    "gm": None,
}


def room_sort_key(number: str | None) -> tuple[int, str]:
    """Natural order for room numbers ("99" < "101"); rooms without a number go last."""
    if number is None:
        return (1_000_000, "")
    return (len(number), number)


# --- property-service ------------------------------------------------------------------------


def property_facts(p: prop.Property) -> d.PropertyFactsData:
    return d.PropertyFactsData(
        name=p.name,
        time_zone=p.time_zone,
        currency=p.currency,
        local_date=p.local_date,
        room_count=p.room_count,
        floors=p.floors,
        room_types=len(p.room_types),
        check_in_time=p.check_in_time,
        check_out_time=p.check_out_time,
    )


def room_status(rooms: prop.RoomList) -> d.RoomStatusData:
    status: Counter[str] = Counter(r.housekeeping_status for r in rooms.items)
    occupied = sum(1 for r in rooms.items if r.occupied)
    return d.RoomStatusData(
        total=len(rooms.items),
        clean=status["clean"],
        dirty=status["dirty"],
        inspected=status["inspected"],
        occupied=occupied,
        vacant=len(rooms.items) - occupied,
        out_of_order=sum(1 for r in rooms.items if r.out_of_order),
    )


def out_of_order_rooms(rooms: prop.RoomList) -> d.RoomListData:
    ooo = sorted((r for r in rooms.items if r.out_of_order), key=lambda r: room_sort_key(r.number))
    rows = [d.RoomRow(number=r.number, floor=r.floor, room_type=r.room_type) for r in ooo]
    return d.RoomListData(count=len(rows), items=rows[: TOP * 5])


def ready_rooms(rooms: prop.RoomList) -> d.ReadyRoomsData:
    """Vacant, not out of order, clean or inspected: what the front desk can assign now."""
    ready = Counter(
        r.room_type
        for r in rooms.items
        if not r.occupied and not r.out_of_order and r.housekeeping_status != "dirty"
    )
    by_type = [d.CountByType(room_type=t, count=n) for t, n in sorted(ready.items())]
    return d.ReadyRoomsData(total=sum(ready.values()), by_room_type=by_type)


# --- reservation-service ---------------------------------------------------------------------


def guest_row(r: rsv.Reservation) -> d.GuestRow:
    return d.GuestRow(
        reservation_id=r.id,
        confirmation_number=r.confirmation_number,
        guest_name=f"{r.guest.first_name} {r.guest.last_name}",
        vip=r.guest.vip,
        loyalty_tier=r.guest.loyalty_tier,
        room_type=r.room_type,
        room_number=r.room_number,
        arrival_date=r.arrival_date,
        departure_date=r.departure_date,
        nights=r.nights,
        eta=r.eta,
        status=r.status,
    )


def by_eta(r: rsv.Reservation) -> tuple[str, str, str, str]:
    return (r.eta or "99:99", r.guest.last_name, r.guest.first_name, r.id)


def by_room(r: rsv.Reservation) -> tuple[tuple[int, str], str, str]:
    return (room_sort_key(r.room_number), r.guest.last_name, r.id)


def guest_list(
    items: Iterable[rsv.Reservation],
    day: date | None,
    key: Callable[[rsv.Reservation], Any],
    limit: int = TOP,
) -> d.GuestListData:
    chosen = sorted(items, key=key)
    return d.GuestListData(
        date=day, total=len(chosen), items=[guest_row(r) for r in chosen[:limit]]
    )


def arrival_summary(a: rsv.ReservationList) -> d.ArrivalSummaryData:
    checked_in = sum(1 for r in a.items if r.status == "checked_in")
    return d.ArrivalSummaryData(
        date=a.date,
        expected=a.total,
        checked_in=checked_in,
        pending=sum(1 for r in a.items if r.status == "booked"),
        vip=sum(1 for r in a.items if r.guest.vip),
    )


def upcoming_arrivals(a: rsv.ReservationList) -> d.GuestListData:
    return guest_list((r for r in a.items if r.status == "booked"), a.date, by_eta)


def vip_guests(a: rsv.ReservationList) -> d.GuestListData:
    return guest_list((r for r in a.items if r.guest.vip), a.date, by_eta)


def unassigned_arrivals(a: rsv.ReservationList) -> d.GuestListData:
    pending = (r for r in a.items if r.status == "booked" and r.room_number is None)
    return guest_list(pending, a.date, by_eta)


def special_requests(a: rsv.ReservationList) -> d.SpecialRequestsData:
    wanted = sorted((r for r in a.items if r.special_requests), key=by_eta)
    rows = [
        d.SpecialRequestRow(
            reservation_id=r.id,
            guest_name=f"{r.guest.first_name} {r.guest.last_name}",
            room_number=r.room_number,
            requests=sorted(r.special_requests),
        )
        for r in wanted
    ]
    return d.SpecialRequestsData(total=len(rows), items=rows[:TOP])


def departure_summary(dep: rsv.ReservationList) -> d.DepartureSummaryData:
    return d.DepartureSummaryData(
        date=dep.date,
        expected=dep.total,
        checked_out=sum(1 for r in dep.items if r.status == "checked_out"),
        pending=sum(1 for r in dep.items if r.status == "checked_in"),
    )


def pending_departures(dep: rsv.ReservationList) -> d.GuestListData:
    return guest_list((r for r in dep.items if r.status == "checked_in"), dep.date, by_room)


def in_house_summary(h: rsv.ReservationList) -> d.InHouseSummaryData:
    return d.InHouseSummaryData(
        rooms=h.total,
        adults=sum(r.adults for r in h.items),
        children=sum(r.children for r in h.items),
        vip=sum(1 for r in h.items if r.guest.vip),
        departing_today=sum(1 for r in h.items if h.date and r.departure_date == h.date),
    )


def in_house_vips(h: rsv.ReservationList) -> d.GuestListData:
    return guest_list((r for r in h.items if r.guest.vip), h.date, by_room)


def no_shows(n: rsv.ReservationList) -> d.GuestListData:
    return guest_list(n.items, n.date, by_eta)


# --- inventory, pricing ----------------------------------------------------------------------


def occupancy(a: inventory.Availability) -> d.OccupancyData:
    return d.OccupancyData(
        date=a.date,
        occupancy_pct=a.occupancy_pct,
        total_rooms=a.total_rooms,
        sold=a.sold,
        available=a.available,
        out_of_order=a.out_of_order,
    )


def availability(a: inventory.Availability) -> d.AvailabilityData:
    rows = [
        d.RoomTypeAvailabilityRow(
            room_type=t.room_type,
            total=t.total,
            sold=t.sold,
            available=t.available,
            out_of_order=t.out_of_order,
        )
        for t in sorted(a.by_room_type, key=lambda t: t.room_type)
    ]
    return d.AvailabilityData(date=a.date, items=rows)


def rates(s: pricing.RateSnapshot) -> d.RatesData:
    rows = [
        d.RateRow(
            room_type=r.room_type,
            bar_minor=r.bar_minor,
            floor_minor=r.floor_minor,
            ceiling_minor=r.ceiling_minor,
            closed_to_arrival=r.closed_to_arrival,
        )
        for r in sorted(s.rates, key=lambda r: r.room_type)
    ]
    return d.RatesData(date=s.date, currency=s.currency, updated_at=s.updated_at, items=rows)


# --- housekeeping-service --------------------------------------------------------------------


def task_row(t: housekeeping.HousekeepingTask) -> d.TaskRow:
    return d.TaskRow(
        task_id=t.id,
        room_number=t.room_number,
        kind=t.kind,
        status=t.status,
        priority=t.priority,
        assignee_name=t.assignee_name,
    )


def housekeeping_progress(tasks: housekeeping.TaskList) -> d.HousekeepingProgressData:
    status: Counter[str] = Counter(t.status for t in tasks.items)
    done = sum(status[s] for s in DONE_TASKS)
    total = len(tasks.items)
    return d.HousekeepingProgressData(
        date=tasks.date,
        total=total,
        done=done,
        in_progress=status["in_progress"],
        pending=status["pending"] + status["assigned"],
        dnd=status["dnd"],
        pct_complete=round(100.0 * done / total, 1) if total else 100.0,
    )


def priority_queue(tasks: housekeeping.TaskList) -> d.TaskListData:
    """Open urgent and high-priority tasks, most urgent first."""
    hot = sorted(
        (t for t in tasks.items if t.status in OPEN_TASKS and t.priority in ("urgent", "high")),
        key=lambda t: (PRIORITY_ORDER[t.priority], room_sort_key(t.room_number), t.id),
    )
    return d.TaskListData(total=len(hot), items=[task_row(t) for t in hot[:TOP]])


def tasks_by_assignee(tasks: housekeeping.TaskList) -> d.AssigneeData:
    open_: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for t in tasks.items:
        who = t.assignee_name or "unassigned"
        if t.status in DONE_TASKS:
            done[who] += 1
        elif t.status in OPEN_TASKS:
            open_[who] += 1
    names = sorted(set(open_) | set(done))
    return d.AssigneeData(
        items=[d.AssigneeRow(assignee=n, open=open_[n], done=done[n]) for n in names]
    )


# --- maintenance-service ---------------------------------------------------------------------


def work_order_row(w: maintenance.WorkOrder) -> d.WorkOrderRow:
    return d.WorkOrderRow(
        work_order_id=w.id,
        title=w.title,
        room_number=w.room_number,
        category=w.category,
        priority=w.priority,
        status=w.status,
        blocks_room=w.blocks_room,
        created_at=w.created_at,
    )


def _open_orders(orders: maintenance.WorkOrderList) -> list[maintenance.WorkOrder]:
    return sorted(
        (w for w in orders.items if w.status in OPEN_WORK),
        key=lambda w: (PRIORITY_ORDER[w.priority], w.created_at, w.id),
    )


def _counts(values: Iterable[str], order: Iterable[str]) -> list[d.CountByKey]:
    counted = Counter(values)
    return [d.CountByKey(key=k, count=counted[k]) for k in order]


def maintenance_backlog(orders: maintenance.WorkOrderList) -> d.MaintenanceBacklogData:
    open_ = _open_orders(orders)
    return d.MaintenanceBacklogData(
        open=len(open_),
        blocking_rooms=sum(1 for w in open_ if w.blocks_room),
        by_priority=_counts((w.priority for w in open_), ("urgent", "high", "medium", "low")),
        by_category=[
            d.CountByKey(key=k, count=n)
            for k, n in sorted(Counter(w.category for w in open_).items())
        ],
    )


def room_blocking_orders(orders: maintenance.WorkOrderList) -> d.WorkOrderListData:
    blocking = [w for w in _open_orders(orders) if w.blocks_room]
    return d.WorkOrderListData(
        total=len(blocking), items=[work_order_row(w) for w in blocking[:TOP]]
    )


def urgent_orders(orders: maintenance.WorkOrderList) -> d.WorkOrderListData:
    hot = [w for w in _open_orders(orders) if w.priority in ("urgent", "high")]
    return d.WorkOrderListData(total=len(hot), items=[work_order_row(w) for w in hot[:TOP]])


# --- billing, analytics ----------------------------------------------------------------------


def folio_balances(s: billing.FolioSummary) -> d.FolioBalancesData:
    return d.FolioBalancesData(
        date=s.date,
        currency=s.currency,
        open_folios=s.open_folios,
        total_balance_minor=s.total_balance_minor,
    )


def revenue_today(s: billing.FolioSummary) -> d.RevenueTodayData:
    return d.RevenueTodayData(
        date=s.date,
        currency=s.currency,
        charges_today_minor=s.charges_today_minor,
        payments_today_minor=s.payments_today_minor,
    )


def kpi_headline(k: analytics.KpiSnapshot) -> d.KpiHeadlineData:
    return d.KpiHeadlineData(
        date=k.date,
        currency=k.currency,
        occupancy_pct=k.occupancy_pct,
        adr_minor=k.adr_minor,
        revpar_minor=k.revpar_minor,
        rooms_sold=k.rooms_sold,
        rooms_available=k.rooms_available,
        room_revenue_minor=k.room_revenue_minor,
        as_of=k.as_of,
    )


def kpi_trend(k: analytics.KpiSnapshot) -> d.KpiTrendData:
    points = [
        d.KpiPointRow(
            date=p.date,
            occupancy_pct=p.occupancy_pct,
            adr_minor=p.adr_minor,
            revpar_minor=p.revpar_minor,
        )
        for p in sorted(k.trend, key=lambda p: p.date)
    ]
    return d.KpiTrendData(currency=k.currency, items=points)


# --- notification, ai ------------------------------------------------------------------------


def open_alerts(alerts: notif.AlertList, role: str) -> d.AlertsData:
    wanted = ROLE_ALERTS.get(role)
    chosen = [
        a for a in alerts.items if a.status == "open" and (wanted is None or a.category in wanted)
    ]
    chosen.sort(key=lambda a: (SEVERITY_ORDER[a.severity], -a.raised_at.timestamp(), a.id))
    severity = Counter(a.severity for a in chosen)
    rows = [
        d.AlertRow(
            alert_id=a.id,
            severity=a.severity,
            category=a.category,
            title=a.title,
            raised_at=a.raised_at,
        )
        for a in chosen[:TOP]
    ]
    return d.AlertsData(
        open=len(chosen),
        critical=severity["critical"],
        warning=severity["warning"],
        info=severity["info"],
        items=rows,
    )


def suggestions(found: ai.SuggestionList, role: str) -> d.SuggestionsData:
    wanted = ROLE_SUGGESTIONS.get(role)
    chosen = [
        s for s in found.items if s.status == "open" and (wanted is None or s.category in wanted)
    ]
    chosen.sort(key=lambda s: (-s.confidence, s.id))
    rows = [
        d.SuggestionRow(
            suggestion_id=s.id,
            category=s.category,
            title=s.title,
            summary=s.summary,
            confidence=s.confidence,
            impact_minor=s.impact_minor,
            expires_at=s.expires_at,
        )
        for s in chosen[:5]
    ]
    return d.SuggestionsData(open=len(chosen), items=rows)
