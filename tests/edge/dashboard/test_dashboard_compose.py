"""The composer against the real simulator, every upstream failing in turn: an upstream that
errors, hangs or drifts greys out exactly its own widgets, the rest arrive intact, and the
composition ends within its deadline (F-5, F-6, F-9, F-14, F-16, F-33)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
import trio

from edge.dashboard.catalogue import PLANS, Plan, Source, Widget, plan_for
from edge.dashboard.composer import WidgetResult, compose
from edge.dashboard.engine import DashboardEngine
from tests.support.dashboard import P, T, reads, running_engine
from tests.support.fixtures import REDIS_URL
from tests.support.sim import SimHandle

DEADLINE_S = 0.55
SLACK_S = 0.35  # scheduling slack on a shared 2-core machine (upper bound only)
GM_UPSTREAMS = sorted({w.upstream for w in plan_for("gm").widgets})


@pytest.fixture
async def engine(
    sim: SimHandle, aio_loop: object, redis_prefix: str
) -> AsyncIterator[DashboardEngine]:
    async with running_engine(sim, REDIS_URL, redis_prefix) as running:
        yield running


async def compose_for(
    engine: DashboardEngine, role: str = "gm"
) -> tuple[list[WidgetResult], bool, float]:
    results: list[WidgetResult] = []
    started = trio.current_time()
    composed = await compose(
        plan_for(role),  # type: ignore[arg-type]
        engine.upstreams,
        T,
        P,
        results.append,
        deadline_s=DEADLINE_S,
    )
    return results, composed.partial, trio.current_time() - started


async def test_a_healthy_composition_has_every_widget_once_and_ok(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    results, partial, _ = await compose_for(engine)
    ids = [r.id for r in results]
    assert sorted(ids) == sorted(plan_for("gm").widget_ids)
    assert len(ids) == len(set(ids))
    assert not partial and all(r.ok for r in results)
    lines = [msgspec.json.decode(r.line) for r in results]
    assert all(line["type"] == "widget" and line["status"] == "ok" for line in lines)
    occupancy = next(line for line in lines if line["id"] == "occupancy.tonight")
    assert occupancy["source"] == "inventory" and occupancy["data"]["totalRooms"] > 0


async def test_widgets_sharing_an_upstream_call_share_one_request(
    sim: SimHandle, engine: DashboardEngine
) -> None:
    await compose_for(engine, "front_desk")
    paths = [c["path"] for c in sim.calls("reservation", kind="all")]
    # five arrival widgets, two departure widgets, two in-house widgets: one call each
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [
        "arrivals",
        "departures",
        "in-house",
        "no-shows",
    ]


@pytest.mark.parametrize("mode", ["error", "hang", "drift"])
@pytest.mark.parametrize("upstream", GM_UPSTREAMS)
async def test_each_upstream_failing_greys_out_exactly_its_widgets(
    sim: SimHandle, engine: DashboardEngine, upstream: str, mode: str
) -> None:
    sim.fault(upstream, mode)
    results, partial, elapsed = await compose_for(engine)
    assert partial
    assert elapsed < DEADLINE_S + SLACK_S
    assert sorted(r.id for r in results) == sorted(plan_for("gm").widget_ids)
    expected_down = {w.id for w in plan_for("gm").widgets if w.upstream == upstream}
    down = {r.id for r in results if not r.ok}
    assert down == expected_down
    for result in results:
        line = msgspec.json.decode(result.line)
        if result.ok:
            assert line["status"] == "ok" and line["data"] is not None
        else:
            assert line == {
                "type": "widget",
                "id": result.id,
                "status": "unavailable",
                "source": upstream,
                "data": None,
            }
    assert reads(sim, upstream) >= 1


async def test_a_fetch_without_any_timeout_of_its_own_cannot_hold_the_composition(
    engine: DashboardEngine,
) -> None:
    """F-33: a call that would wait forever (no client timeout at all) is cut off at its
    widget's deadline; the other widgets arrive, the composition ends in time."""

    async def forever(*_: object) -> object:
        await trio.sleep_forever()

    stuck = Source("stuck.call", "analytics", forever)
    hung = Widget(
        "stuck.widget", (stuck,), frozenset({"gm"}), 0.3, lambda v, r: v[0], msgspec.Struct
    )
    base = plan_for("maintenance")
    widgets = (*base.widgets, hung)
    plan = Plan("gm", widgets, (*base.sources, stuck), "test", frozenset(w.id for w in widgets))
    results: list[WidgetResult] = []
    started = trio.current_time()
    composed = await compose(plan, engine.upstreams, T, P, results.append, deadline_s=DEADLINE_S)
    assert trio.current_time() - started < 0.3 + SLACK_S
    assert composed.partial and composed.slowest_call_s >= 0.25
    assert {r.id for r in results if not r.ok} == {"stuck.widget"}
    assert sorted(r.id for r in results) == sorted(plan.widget_ids)


def test_every_role_has_a_plan_and_a_gm_sees_more_than_a_housekeeper() -> None:
    assert set(PLANS) == {"front_desk", "housekeeping", "maintenance", "fnb_manager", "gm"}
    gm, hk = set(plan_for("gm").widget_ids), set(plan_for("housekeeping").widget_ids)
    assert gm != hk and "kpi.headline" in gm and "kpi.headline" not in hk
    assert "housekeeping.priorityQueue" in hk and "housekeeping.priorityQueue" not in gm
