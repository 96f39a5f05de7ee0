"""The workbench views: what each one reads, and how its rows are bounded and sorted.

Every list is sorted on a total key (ties broken by id) and holds at most ``MAX_ROWS`` rows; the
route cuts it to the caller's ``limit``. A view fails as a whole with the upstream's contract
error (502 UPSTREAM_UNAVAILABLE / SCHEMA_DRIFT; F-4) — the boards' stale fallback (F-7, F-8)
is the engine's business, because it needs the cache.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import trio

from edge.dashboard import widgets as w
from edge.dashboard.invalidation import VIEW_UPSTREAMS, view_name
from edge.upstream.apis import Upstreams
from schemas import dashboard as d
from schemas.dashboard import MAX_ROWS, WorkbenchView
from schemas.upstream import housekeeping, maintenance
from schemas.upstream import reservation as rsv

TASK_STATUS_ORDER = ("in_progress", "assigned", "pending", "dnd", "done", "inspected")
WORK_STATUS_ORDER = ("open", "assigned", "in_progress", "on_hold", "resolved")
# Views served from their last good copy (marked stale) while their upstream is down.
BOARDS: tuple[WorkbenchView, ...] = ("housekeepingBoard", "maintenanceBoard")


@dataclass(frozen=True)
class ViewSpec:
    """One workbench view of one property: which view, and for which day (None: today)."""

    view: WorkbenchView
    day: date | None = None

    @property
    def name(self) -> str:
        return view_name(self.view, self.day.isoformat() if self.day else None)

    @property
    def family(self) -> str:
        return view_name(self.view)

    @property
    def upstream(self) -> str:
        return VIEW_UPSTREAMS[self.view]

    @property
    def model(self) -> type[msgspec.Struct]:
        return MODELS[self.view]


def now() -> datetime:
    return datetime.now(UTC)


async def gather(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``calls`` concurrently; the first failure cancels the rest and is raised as itself
    (not wrapped in an exception group), so contract errors reach the error handler intact."""
    results: list[Any] = [None] * len(calls)
    failure: list[Exception] = []

    async def run(i: int, call: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
        try:
            results[i] = await call()
        except Exception as exc:
            failure.append(exc)
            scope.cancel()

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(run, i, call, nursery.cancel_scope)
    if failure:
        raise failure[0]
    return results


# --- reservation views -----------------------------------------------------------------------


def guest_view(
    found: rsv.ReservationList, key: Callable[[rsv.Reservation], Any]
) -> d.GuestListView:
    rows = sorted(found.items, key=key)
    return d.GuestListView(
        property_id=found.property_id,
        date=found.date,
        total=len(rows),
        truncated=len(rows) > MAX_ROWS,
        items=[w.guest_row(r) for r in rows[:MAX_ROWS]],
        generated_at=now(),
    )


def today_view(
    arrivals: rsv.ReservationList, departures: rsv.ReservationList, in_house: rsv.ReservationList
) -> d.TodayView:
    a = w.arrival_summary(arrivals)
    dep = w.departure_summary(departures)
    return d.TodayView(
        property_id=arrivals.property_id,
        date=arrivals.date,
        arrivals=d.ArrivalCounts(
            expected=a.expected, checked_in=a.checked_in, pending=a.pending, vip=a.vip
        ),
        departures=d.DepartureCounts(
            expected=dep.expected, checked_out=dep.checked_out, pending=dep.pending
        ),
        in_house=d.InHouseCounts(
            rooms=in_house.total,
            guests=sum(r.adults + r.children for r in in_house.items),
            vip=sum(1 for r in in_house.items if r.guest.vip),
        ),
        next_arrivals=w.upcoming_arrivals(arrivals).items,
        generated_at=now(),
    )


# --- boards ----------------------------------------------------------------------------------


def housekeeping_board(tasks: housekeeping.TaskList) -> d.HousekeepingBoardView:
    order = {s: i for i, s in enumerate(TASK_STATUS_ORDER)}
    rows = sorted(
        tasks.items,
        key=lambda t: (
            order.get(t.status, 99),
            w.PRIORITY_ORDER.get(t.priority, 9),
            w.room_sort_key(t.room_number),
            t.id,
        ),
    )
    counts: Counter[str] = Counter(t.status for t in rows)
    stamp = now()
    return d.HousekeepingBoardView(
        property_id=tasks.property_id,
        date=tasks.date,
        total=len(rows),
        truncated=len(rows) > MAX_ROWS,
        counts=[d.CountByKey(key=s, count=counts[s]) for s in TASK_STATUS_ORDER],
        items=[w.task_row(t) for t in rows[:MAX_ROWS]],
        generated_at=stamp,
        as_of=stamp,
    )


def maintenance_board(orders: maintenance.WorkOrderList) -> d.MaintenanceBoardView:
    order = {s: i for i, s in enumerate(WORK_STATUS_ORDER)}
    rows = sorted(
        (o for o in orders.items if o.status != "closed"),
        key=lambda o: (w.PRIORITY_ORDER.get(o.priority, 9), order[o.status], o.created_at, o.id),
    )
    counts: Counter[str] = Counter(o.status for o in rows)
    stamp = now()
    return d.MaintenanceBoardView(
        property_id=orders.property_id,
        total=len(rows),
        truncated=len(rows) > MAX_ROWS,
        counts=[d.CountByKey(key=s, count=counts[s]) for s in WORK_STATUS_ORDER],
        items=[w.work_order_row(o) for o in rows[:MAX_ROWS]],
        generated_at=stamp,
        as_of=stamp,
    )


# --- building one view -----------------------------------------------------------------------


async def build_view(
    spec: ViewSpec, upstreams: Upstreams, tenant: str, property_id: str
) -> msgspec.Struct:
    """Read the view's upstream(s) and shape the answer; raises the upstream's ApiError."""
    r = upstreams.reservation
    if spec.view == "today":
        arrivals, departures, in_house = await gather(
            lambda: r.arrivals(tenant, property_id),
            lambda: r.departures(tenant, property_id),
            lambda: r.in_house(tenant, property_id),
        )
        return today_view(arrivals, departures, in_house)
    if spec.view == "arrivals":
        return guest_view(await r.arrivals(tenant, property_id, spec.day), w.by_eta)
    if spec.view == "departures":
        return guest_view(await r.departures(tenant, property_id, spec.day), w.by_room)
    if spec.view == "inHouse":
        return guest_view(await r.in_house(tenant, property_id), w.by_room)
    if spec.view == "housekeepingBoard":
        return housekeeping_board(await upstreams.housekeeping.tasks(tenant, property_id))
    if spec.view == "maintenanceBoard":
        return maintenance_board(await upstreams.maintenance.work_orders(tenant, property_id))
    raise ValueError(f"unknown workbench view {spec.view!r}")


MODELS: dict[str, type[msgspec.Struct]] = {
    "today": d.TodayView,
    "arrivals": d.GuestListView,
    "departures": d.GuestListView,
    "inHouse": d.GuestListView,
    "housekeepingBoard": d.HousekeepingBoardView,
    "maintenanceBoard": d.MaintenanceBoardView,
}
