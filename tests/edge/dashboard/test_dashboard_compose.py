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
# An overall deadline past every upstream client's own give-up time (>= 0.8 s for a hung
# upstream), so a composition that ends early can only have been ended by its per-widget and
# per-call deadlines (F-33): a missing one shows as a composition that runs >= 0.8 s.
LONG_DEADLINE_S = 3.0
WIDGET_SLACK_S = 0.25  # < 0.8 s - the slowest widget deadline (0.5 s)
GM_UPSTREAMS = sorted({w.upstream for w in plan_for("gm").widgets})


@pytest.fixture
async def engine(
    sim: SimHandle, aio_loop: object, redis_prefix: str
) -> AsyncIterator[DashboardEngine]:
    async with running_engine(sim, REDIS_URL, redis_prefix) as running:
        yield running


async def compose_for(
    engine: DashboardEngine, role: str = "gm", deadline_s: float = DEADLINE_S
) -> tuple[list[WidgetResult], bool, float]:
    results: list[WidgetResult] = []
    started = trio.current_time()
    composed = await compose(
        plan_for(role),  # type: ignore[arg-type]
        engine.upstreams,
        T,
        P,
        results.append,
        deadline_s=deadline_s,
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
    results, partial, elapsed = await compose_for(engine, deadline_s=LONG_DEADLINE_S)
    assert partial
    # ended by the failing widgets' own deadlines (F-33), not by the far overall one
    own_deadline = max(w.deadline_s for w in plan_for("gm").widgets if w.upstream == upstream)
    assert elapsed < own_deadline + WIDGET_SLACK_S, elapsed
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
    emitted: dict[str, float] = {}
    results: list[WidgetResult] = []
    started = trio.current_time()

    def emit(result: WidgetResult) -> None:
        emitted[result.id] = trio.current_time() - started
        results.append(result)

    composed = await compose(plan, engine.upstreams, T, P, emit, deadline_s=LONG_DEADLINE_S)
    elapsed = trio.current_time() - started
    # cut off at its own 0.3 s, not at the overall deadline (3 s here)
    assert 0.3 <= emitted["stuck.widget"] < 0.3 + WIDGET_SLACK_S, emitted
    assert elapsed < 0.3 + WIDGET_SLACK_S, elapsed
    assert composed.partial and 0.25 <= composed.slowest_call_s < 0.3 + WIDGET_SLACK_S
    assert {r.id for r in results if not r.ok} == {"stuck.widget"}
    assert sorted(r.id for r in results) == sorted(plan.widget_ids)
    assert max(t for i, t in emitted.items() if i != "stuck.widget") < emitted["stuck.widget"]


class Value(msgspec.Struct):
    n: int


def _source(name: str, seconds: float | None) -> Source:
    """A call that answers after ``seconds`` (None: never)."""

    async def fetch(*_: object) -> Value:
        if seconds is None:
            await trio.sleep_forever()
        await trio.sleep(seconds or 0)
        return Value(1)

    return Source(name, "analytics", fetch)


def _widget(name: str, source: Source, deadline_s: float) -> Widget:
    return Widget(name, (source,), frozenset({"gm"}), deadline_s, lambda v, r: v[0], Value)


async def test_the_three_nested_deadlines_on_a_virtual_clock(autojump_clock: object) -> None:
    """F-33 exactly (Trio's virtual clock, no I/O): a widget ends at its own deadline, a call
    shared by two widgets runs to the longer of their deadlines, and the overall deadline cuts
    off a widget whose own deadline is later."""
    fast, slow, never = _source("fast", 0.1), _source("slow", 0.4), _source("never", None)
    widgets = (
        _widget("fast.ok", fast, 0.45),
        _widget("slow.impatient", slow, 0.3),  # gives up on the shared call at 0.3 ...
        _widget("slow.patient", slow, 0.45),  # ... which still answers this one at 0.4
        _widget("never.short", never, 0.2),
        _widget("never.long", never, 5.0),  # longer than the whole composition may take
    )
    plan = Plan("gm", widgets, (fast, slow, never), "test", frozenset(w.id for w in widgets))
    emitted: dict[str, tuple[float, bool]] = {}

    def emit(result: WidgetResult) -> None:
        emitted[result.id] = (trio.current_time() - started, result.ok)

    started = trio.current_time()
    with trio.fail_after(60):  # virtual seconds: a missing overall deadline fails, not hangs
        composed = await compose(
            plan,
            None,  # type: ignore[arg-type]  # these sources never touch an upstream client
            T,
            P,
            emit,
            deadline_s=1.0,
        )
    assert trio.current_time() - started == pytest.approx(1.0)
    assert {k: (round(t, 6), ok) for k, (t, ok) in emitted.items()} == {
        "fast.ok": (0.1, True),
        "never.short": (0.2, False),
        "slow.impatient": (0.3, False),
        "slow.patient": (0.4, True),
        "never.long": (1.0, False),
    }
    assert composed.partial and composed.slowest_call_s == pytest.approx(1.0)


def test_every_role_has_a_plan_and_a_gm_sees_more_than_a_housekeeper() -> None:
    assert set(PLANS) == {"front_desk", "housekeeping", "maintenance", "fnb_manager", "gm"}
    gm, hk = set(plan_for("gm").widget_ids), set(plan_for("housekeeping").widget_ids)
    assert gm != hk and "kpi.headline" in gm and "kpi.headline" not in hk
    assert "housekeeping.priorityQueue" in hk and "housekeeping.priorityQueue" not in gm
