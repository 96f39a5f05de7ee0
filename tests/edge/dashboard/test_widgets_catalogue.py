"""The widget catalogue, the render functions, flights and the invalidation table (pure units)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec
import pytest
import trio
import trio.testing

from edge.dashboard import widgets as w
from edge.dashboard.catalogue import CATALOGUE, PLANS, ROLES, plan_for
from edge.dashboard.flight import Flight
from edge.dashboard.invalidation import affected_by, family_of, is_affected
from edge.settings import load_settings
from schemas.upstream import reservation as rsv


def test_at_least_24_widgets_from_at_least_8_upstreams_each_seen_by_some_role() -> None:
    assert len(CATALOGUE) >= 24
    assert len({widget.upstream for widget in CATALOGUE}) >= 8
    for widget in CATALOGUE:
        assert widget.roles and widget.roles <= set(ROLES), widget.id
        assert 0 < widget.deadline_s <= load_settings({}).dashboard_deadline_s, widget.id


def test_each_role_plan_calls_each_upstream_operation_once() -> None:
    for role, plan in PLANS.items():
        assert [s.id for s in plan.sources] == sorted(
            {s.id for s in plan.sources}, key=[s.id for s in plan.sources].index
        )
        assert len({s.id for s in plan.sources}) == len(plan.sources), role
        needed = {s.id for widget in plan.widgets for s in widget.sources}
        assert needed == {s.id for s in plan.sources}, role


def test_dashboards_differ_by_role() -> None:
    sets = {role: frozenset(plan_for(role).widget_ids) for role in ROLES}
    assert len(set(sets.values())) == len(ROLES)
    assert len(sets["gm"]) > len(sets["housekeeping"]) > len(sets["maintenance"])
    assert {p.fingerprint for p in PLANS.values()}.__len__() == len(ROLES)


def _reservation(rid: str, last: str, eta: str | None, *, vip: bool = False) -> rsv.Reservation:
    return rsv.Reservation(
        id=rid,
        tenant_id="t",
        property_id="p",
        confirmation_number=f"C-{rid}",
        status="booked",
        guest=rsv.Guest(
            id=f"g-{rid}",
            first_name="A",
            last_name=last,
            vip=vip,
            loyalty_tier="none",
            country_code="DE",
        ),
        room_type="DBL",
        room_id=None,
        room_number=None,
        arrival_date=date(2026, 11, 21),
        departure_date=date(2026, 11, 23),
        nights=2,
        adults=2,
        children=0,
        rate_minor=10000,
        currency="EUR",
        channel="direct",
        eta=eta,
        special_requests=[],
        folio_id=f"f-{rid}",
    )


def test_guest_lists_sort_on_a_total_key_whatever_the_input_order() -> None:
    items = [
        _reservation("r3", "Berg", "14:00"),
        _reservation("r1", "Berg", "14:00"),
        _reservation("r2", "Adler", None, vip=True),
        _reservation("r4", "Zed", "09:30"),
    ]
    forward = rsv.ReservationList(property_id="p", date=None, items=items, total=4)
    backward = rsv.ReservationList(property_id="p", date=None, items=items[::-1], total=4)
    one, two = w.upcoming_arrivals(forward), w.upcoming_arrivals(backward)
    assert [r.reservation_id for r in one.items] == ["r4", "r1", "r3", "r2"]
    assert msgspec.json.encode(one) == msgspec.json.encode(two)
    assert [r.reservation_id for r in w.vip_guests(forward).items] == ["r2"]


def test_room_numbers_sort_naturally() -> None:
    assert sorted(["101", "99", "1001", None, "12"], key=w.room_sort_key) == [
        "12",
        "99",
        "101",
        "1001",
        None,
    ]


async def test_a_late_follower_gets_everything_once_then_the_rest_live() -> None:
    flight: Flight[int] = Flight("dashboard:gm")
    flight.add(1)
    flight.add(2)
    seen: list[int] = []

    async def follow() -> None:
        cursor = 0
        while batch := await flight.next_items(cursor):
            cursor += len(batch)
            seen.extend(batch)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [1, 2]
        flight.add(3)
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [1, 2, 3]
        flight.finish(partial=False)
    assert seen == [1, 2, 3] and flight.finished and flight.generated_at is not None
    flight.finish(partial=True)  # the first outcome stands
    assert flight.partial is False


async def test_done_flights_replay_at_once() -> None:
    """A cache hit is a flight that is already over: a follower gets every item with its first
    read and then the end, without ever waiting; nothing can be added and the outcome stands."""
    stamp = datetime(2026, 11, 21, tzinfo=UTC).timestamp()
    flight = Flight.done(
        "view:today", [b"a", b"b"], partial=True, origin="cache", generated_at=stamp
    )
    first: list[bytes] | None = None
    rest: list[bytes] | None = None
    with trio.CancelScope() as scope:
        scope.cancel()  # any wait (a checkpoint) in here raises Cancelled at once
        first = await flight.next_items(0)
        rest = await flight.next_items(len(first))
        await flight.wait()
    assert not scope.cancelled_caught, "a follower of a finished flight waited"
    assert (first, rest) == ([b"a", b"b"], [])
    with pytest.raises(RuntimeError, match="already finished"):
        flight.add(b"c")
    flight.finish(partial=False, generated_at=stamp + 60)  # the first outcome stands
    assert (flight.partial, flight.generated_at, flight.items) == (True, stamp, [b"a", b"b"])


def test_event_effects() -> None:
    reservation = affected_by("melmastoon.reservation.checked_out.v1")
    assert "reservation" in reservation.upstreams and "view:arrivals" in reservation.families
    assert "dashboard:front_desk" in reservation.families
    housekeeping = affected_by("melmastoon.housekeeping.task.created.v1")
    assert housekeeping.views == ["housekeepingBoard"]
    assert "housekeeping.progress" in housekeeping.widgets
    assert "kpi.headline" not in housekeeping.widgets
    maintenance = affected_by("melmastoon.maintenance.workorder.opened.v1")
    assert maintenance.views == ["maintenanceBoard"]
    assert not affected_by("melmastoon.iam.session.revoked.v1")
    assert family_of("view:arrivals:2026-11-21") == "view:arrivals"
    assert family_of("dashboard:gm") == "dashboard:gm"
    assert family_of("board.hk") is None and is_affected("board.hk", housekeeping)
    assert not is_affected("view:maintenanceBoard", housekeeping)
