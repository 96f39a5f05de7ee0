"""Workbench views through the engine (real simulator, real Redis): deterministic sorting and
bounds, reservation-service down → 502 (F-4), boards served stale within a bounded staleness
while housekeeping/maintenance are down (F-7, F-8), else 502."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from edge.dashboard.cache import make_snapshot
from edge.dashboard.engine import DashboardEngine, Timing
from edge.dashboard.flight import Flight
from edge.dashboard.views import ViewSpec
from edge.errors import ApiError, Code
from edge.upstream.errors import UpstreamFailure
from schemas.dashboard import WorkbenchView
from tests.support.dashboard import P, T, eventually_async, reads, running_engine
from tests.support.fixtures import REDIS_URL
from tests.support.sim import SimHandle

TIMING = Timing(stale_max_s=300.0)


@pytest.fixture
async def engine(
    sim: SimHandle, aio_loop: object, redis_prefix: str
) -> AsyncIterator[DashboardEngine]:
    async with running_engine(sim, REDIS_URL, redis_prefix, TIMING) as running:
        yield running


async def view(engine: DashboardEngine, name: WorkbenchView, **kw: Any) -> Flight[bytes]:
    flight = await engine.view(T, P, ViewSpec(name, **kw))
    await flight.wait()
    return flight


def body(flight: Flight[bytes]) -> dict[str, Any]:
    assert flight.error is None, flight.error
    decoded: dict[str, Any] = msgspec.json.decode(flight.items[0])
    return decoded


async def stored(engine: DashboardEngine, spec: ViewSpec) -> None:
    async def check() -> bool:
        return await engine.cache.get(engine.view_ref(T, P, spec)) is not None

    await eventually_async(check, 2.0)


async def test_arrivals_are_sorted_by_eta_and_the_same_every_time(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    first = body(await view(engine, "arrivals"))
    keys = [(r["eta"] or "99:99") for r in first["items"]]
    assert keys == sorted(keys) and first["total"] == len(first["items"]) > 0
    await stored(engine, ViewSpec("arrivals"))
    await engine.cache.bump(T, P, ["view:arrivals"])  # invalidated: compose again
    second = body(await view(engine, "arrivals"))
    assert reads(sim, "reservation") == 2
    assert [r["reservationId"] for r in second["items"]] == [
        r["reservationId"] for r in first["items"]
    ]


async def test_a_past_date_reads_that_day(sim: SimHandle, engine: DashboardEngine) -> None:
    past = sim.today() - timedelta(days=3)
    departures = body(await view(engine, "departures", day=past))
    assert departures["date"] == past.isoformat()
    assert [c["path"] for c in sim.calls("reservation", kind="all")][-1].endswith("/departures")


async def test_reservation_down_fails_the_reservation_views_with_502(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    sim.fault("reservation", "error")
    for name in ("today", "arrivals", "inHouse"):
        flight = await view(engine, name)
        assert isinstance(flight.error, UpstreamFailure), name
        assert flight.error.code is Code.UPSTREAM_UNAVAILABLE


async def test_a_drifting_reservation_service_is_schema_drift(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    sim.fault("reservation", "drift")
    flight = await view(engine, "departures")
    assert isinstance(flight.error, ApiError) and flight.error.code is Code.SCHEMA_DRIFT


@pytest.mark.parametrize(
    ("name", "upstream"),
    [("housekeepingBoard", "housekeeping"), ("maintenanceBoard", "maintenance")],
)
async def test_a_board_is_served_stale_while_its_upstream_is_down(
    sim: SimHandle, engine: DashboardEngine, name: WorkbenchView, upstream: str
) -> None:
    spec = ViewSpec(name)
    fresh = body(await view(engine, name))
    assert fresh["stale"] is False
    await stored(engine, spec)
    await engine.cache.bump(T, P, [spec.family])  # the fresh entry is gone (an event, a TTL)
    sim.fault(upstream, "error")
    old = await view(engine, name)
    stale = body(old)
    assert old.partial and stale["stale"] is True
    assert stale["asOf"] == fresh["asOf"] and stale["items"] == fresh["items"]
    calls = reads(sim, upstream)
    again = body(await view(engine, name))  # the stale answer is cached briefly: no new call
    assert again["stale"] is True and reads(sim, upstream) == calls


async def test_a_board_older_than_the_staleness_bound_is_502(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    spec = ViewSpec("maintenanceBoard")
    good = body(await view(engine, "maintenanceBoard"))
    await stored(engine, spec)
    ref = engine.view_ref(T, P, spec)
    ancient = make_snapshot(
        ref, 0, False, [msgspec.json.encode(good)], time.time() - TIMING.stale_max_s - 1
    )
    assert await engine.cache.store(ref, ancient, 30, last_s=60)
    await engine.cache.bump(T, P, [spec.family])
    sim.fault("maintenance", "error")
    flight = await view(engine, "maintenanceBoard")
    assert isinstance(flight.error, UpstreamFailure)
    assert flight.error.code is Code.UPSTREAM_UNAVAILABLE


async def test_a_board_with_no_copy_at_all_is_502(sim: SimHandle, engine: DashboardEngine) -> None:
    sim.fault("housekeeping", "hang")
    flight = await view(engine, "housekeepingBoard")
    assert isinstance(flight.error, UpstreamFailure) and flight.error.kind == "timeout"


async def test_boards_are_sorted_by_status_priority_and_room(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    board = body(await view(engine, "housekeepingBoard"))
    order = ["in_progress", "assigned", "pending", "dnd", "done", "inspected"]
    statuses = [order.index(t["status"]) for t in board["items"]]
    assert statuses == sorted(statuses)
    assert sum(c["count"] for c in board["counts"]) == board["total"] == len(board["items"])
    work = body(await view(engine, "maintenanceBoard"))
    rank = {"urgent": 0, "high": 1, "medium": 2, "low": 3}
    assert [rank[w["priority"]] for w in work["items"]] == sorted(
        rank[w["priority"]] for w in work["items"]
    )
    assert all(w["status"] != "closed" for w in work["items"])
