"""The demo world: deterministic from a seed, relative to each property's local today, and rich
enough for every board (no server needed: the generator is pure)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import msgspec

from ops.sim import catalog
from ops.sim.generate import build_world
from ops.sim.world import World


def _without_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timestamps(v) for k, v in value.items() if not k.endswith("At")}
    if isinstance(value, list):
        return [_without_timestamps(v) for v in value]
    return value


def _snapshot(world: World) -> Any:
    out = {}
    for pid, p in world.properties.items():
        out[pid] = _without_timestamps(
            msgspec.to_builtins(
                {
                    "rooms": list(p.rooms.values()),
                    "reservations": list(p.reservations.values()),
                    "tasks": list(p.tasks.values()),
                    "workOrders": list(p.work_orders.values()),
                    "alerts": list(p.alerts.values()),
                    "suggestions": list(p.suggestions.values()),
                    "rates": {d.isoformat(): r for d, r in p.rates.items()},
                }
            )
        )
    return out


def test_same_seed_same_world_other_seed_other_world() -> None:
    first, again, other = build_world(7), build_world(7), build_world(8)
    assert _snapshot(first) == _snapshot(again)
    assert _snapshot(first) != _snapshot(other)


def test_pinned_tenants_properties_and_operators() -> None:
    world = build_world(1)
    assert world.tenants["tnt-demo"].property_ids == ["prop-demo-1", "prop-demo-2"]
    assert world.tenants["tnt-other"].property_ids == ["prop-other-1"]
    assert world.tenants["tnt-suspended"].status == "suspended"
    by_name = {o.username: o for o in world.operators.values()}
    assert {n: (o.role, o.property_ids) for n, o in by_name.items()} == {
        "fd.demo": ("front_desk", ["prop-demo-1"]),
        "hk.demo": ("housekeeping", ["prop-demo-1"]),
        "mt.demo": ("maintenance", ["prop-demo-1"]),
        "gm.demo": ("gm", ["prop-demo-1", "prop-demo-2"]),
        "fd.other": ("front_desk", ["prop-other-1"]),
        "fd.susp": ("front_desk", ["prop-susp-1"]),
    }


def test_each_property_has_a_full_front_desk_day() -> None:
    world = build_world(20261121)
    for ps in world.properties.values():
        today = ps.today()
        assert today == ps.anchor
        assert 100 <= len(ps.rooms) <= 140
        assert len({r.floor for r in ps.rooms.values()}) >= 4
        assert len({r.room_type for r in ps.rooms.values()}) == len(catalog.ROOM_TYPES)
        reservations = list(ps.reservations.values())
        assert min(r.arrival_date for r in reservations) <= today - timedelta(days=28)
        assert max(r.arrival_date for r in reservations) >= today + timedelta(days=28)
        arrivals = [ps.reservations[r] for r in ps.by_arrival[today]]
        assert len(arrivals) >= 15 and sum(r.guest.vip for r in arrivals) >= 2
        assert {"booked", "checked_in"} <= {r.status for r in arrivals}
        departures = {ps.reservations[r].status for r in ps.by_departure[today]}
        assert {"checked_in", "checked_out"} <= departures
        assert len(ps.in_house) >= 0.4 * len(ps.rooms)
        assert all(ps.reservations[r].status == "checked_in" for r in ps.in_house)
        yesterday = [ps.reservations[r] for r in ps.by_arrival[today - timedelta(days=1)]]
        assert sum(r.status == "no_show" for r in yesterday) >= 1
        assert {t.status for t in ps.tasks.values()} == {
            "pending",
            "assigned",
            "in_progress",
            "done",
            "inspected",
            "dnd",
        }
        assert {w.status for w in ps.work_orders.values()} == {
            "open",
            "assigned",
            "in_progress",
            "on_hold",
            "resolved",
            "closed",
        }
        assert sum(r.out_of_order for r in ps.rooms.values()) == 2
        assert {"open", "resolved"} <= {a.status for a in ps.alerts.values()}
        assert len({s.category for s in ps.suggestions.values()}) >= 4
        assert {r.room_type for r in ps.rates[today]} == {rt.code for rt in ps.room_types}
        staying = sum(1 for r in ps.in_house if ps.reservations[r].departure_date > today)
        coming = sum(1 for r in arrivals if r.status == "booked")
        assert sum(ps.sold[today].values()) == staying + coming  # tonight's rooms sold


def test_occupied_rooms_match_in_house_guests() -> None:
    world = build_world(3)
    for ps in world.properties.values():
        occupied = {r.id for r in ps.rooms.values() if r.occupied}
        in_house_rooms = {ps.reservations[r].room_id for r in ps.in_house}
        assert occupied == in_house_rooms
        assert Counter(ps.reservations[r].room_id for r in ps.in_house).most_common(1)[0][1] == 1
