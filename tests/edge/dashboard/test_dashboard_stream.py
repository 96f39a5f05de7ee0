"""The dashboard over real HTTP: a real BFF process, the simulator, real Redis and Postgres,
authenticated desktops (DPoP). Stream order and completeness, JSON mode, one upstream failing
in turn, single-flight under 100 concurrent cold requests, tenant/role isolation, the cache
tier stopped, and the view telemetry in the ledger."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis
import trio

from edge.dashboard.catalogue import plan_for
from ledger.database import Database
from tests.support.dashboard import P, T, by_id, eventually_async, reads
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import PrivateRedis, ServiceProcess, wait_until
from tests.support.pubsub import Bus
from tests.support.sim import SimHandle

DASHBOARD = "/bff/backoffice/v1/dashboard"
NDJSON = {"Accept": "application/x-ndjson"}
DEADLINE_S = 0.55
SLACK_S = 1.0  # auth, HTTP and scheduling on a shared 2-core machine (upper bound only)
# An overall deadline past any upstream client's own give-up time, so only the per-widget
# deadlines can end a composition early (a missing one shows as a late widget).
LONG_DEADLINE_S = 3.0
HANG_SLACK_S = 0.35  # scheduling and chunk delivery, measured from the begin line


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


@pytest.fixture
def gm(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "gm.demo")
    yield desk
    desk.close()


def stream(desk: Desktop, prop: str = P) -> tuple[list[dict[str, Any]], list[float], float]:
    """The NDJSON lines, when each arrived (s after the request), and the total time."""
    lines: list[dict[str, Any]] = []
    arrived: list[float] = []
    started = time.perf_counter()
    headers = desk.headers("GET", DASHBOARD, **NDJSON)
    with desk.http.stream("GET", DASHBOARD, params={"propertyId": prop}, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for raw in r.iter_lines():
            if raw:
                lines.append(msgspec.json.decode(raw))
                arrived.append(time.perf_counter() - started)
    return lines, arrived, time.perf_counter() - started


def check_shape(lines: list[dict[str, Any]], role: str) -> None:
    """``begin`` first, ``end`` last, every declared widget exactly once in between."""
    begin, *widgets, end = lines
    assert begin == {
        "type": "begin",
        "propertyId": P,
        "role": role,
        "widgets": plan_for(role).widget_ids,  # type: ignore[arg-type]
    }
    assert end["type"] == "end" and set(end) == {"type", "partial"}
    assert all(w["type"] == "widget" for w in widgets)
    ids = [w["id"] for w in widgets]
    assert sorted(ids) == sorted(begin["widgets"]) and len(ids) == len(set(ids))
    for w in widgets:
        assert set(w) == {"type", "id", "status", "source", "data"}
        assert (w["data"] is None) == (w["status"] == "unavailable")


def invalidate(prefix: str, role: str) -> None:
    """What a domain event does to the cache: bump the dashboard's generation."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.hincrby(f"{prefix}:{T}:property:{P}:cache-gen", f"dashboard:{role}", 1)
    finally:
        client.close()


def test_the_stream_begins_then_sends_each_widget_once_then_ends(
    sim: SimHandle, fd: Desktop
) -> None:
    lines, _, _ = stream(fd)
    check_shape(lines, "front_desk")
    assert lines[-1] == {"type": "end", "partial": False}
    assert all(w["status"] == "ok" for w in lines[1:-1])
    assert by_id(lines)["rates.snapshot"]["source"] == "pricing"
    # warm: the same content from the cache, no upstream call
    calls = reads(sim, "inventory")
    again, _, _ = stream(fd)
    check_shape(again, "front_desk")
    assert by_id(again) == by_id(lines) and reads(sim, "inventory") == calls
    # the widgets carry the simulator's (seeded) data, read here straight from its API
    arrivals = sim.get(f"/reservation/v1/tenants/{T}/properties/{P}/arrivals")
    rooms = sim.get(f"/property/v1/tenants/{T}/properties/{P}/rooms")["items"]
    widgets = by_id(lines)
    assert widgets["arrivals.summary"]["data"] == {
        "date": arrivals["date"],
        "expected": arrivals["total"],
        "checkedIn": sum(r["status"] == "checked_in" for r in arrivals["items"]),
        "pending": sum(r["status"] == "booked" for r in arrivals["items"]),
        "vip": sum(r["guest"]["vip"] for r in arrivals["items"]),
    }
    assert arrivals["total"] > 0
    room_status = widgets["rooms.status"]["data"]
    assert (room_status["total"], room_status["outOfOrder"], room_status["occupied"]) == (
        len(rooms),
        sum(r["outOfOrder"] for r in rooms),
        sum(r["occupied"] for r in rooms),
    )


def test_json_mode_returns_the_same_content_at_once(sim: SimHandle, gm: Desktop) -> None:
    lines, _, _ = stream(gm)
    response = gm.get(DASHBOARD, params={"propertyId": P}, headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert set(doc) == {"propertyId", "role", "generatedAt", "partial", "widgets"}
    assert (doc["propertyId"], doc["role"], doc["partial"]) == (P, "gm", False)
    assert [w["id"] for w in doc["widgets"]] == plan_for("gm").widget_ids
    assert {w["id"]: w for w in doc["widgets"]} == by_id(lines)
    assert doc["generatedAt"].endswith("Z")


def test_each_failing_upstream_greys_only_its_widgets_and_the_stream_ends_in_time(
    start_bff: ServiceFactory, sim: SimHandle, redis_prefix: str
) -> None:
    """F-33 per widget: with an overall deadline far away, each widget's own deadline (the
    catalogue's) is what ends it. A hung upstream's widgets turn unavailable at their deadline,
    not when its client gives up (analytics: 2 x 600 ms), while the others arrive at once."""
    bff = start_bff(SIM_URL=sim.url, BFF_DASHBOARD_DEADLINE_S=str(LONG_DEADLINE_S))
    gm = Desktop(bff.url, sim.url, "gm.demo")
    try:
        for upstream, mode in (("pricing", "error"), ("analytics", "hang"), ("billing", "drift")):
            sim.clear_faults()
            sim.fault(upstream, mode)
            invalidate(redis_prefix, "gm")
            lines, arrived, total = stream(gm)
            check_shape(lines, "gm")
            assert lines[-1] == {"type": "end", "partial": True}, upstream
            widgets = plan_for("gm").widgets
            down = {w["id"] for w in lines[1:-1] if w["status"] == "unavailable"}
            assert down == {w.id for w in widgets if w.upstream == upstream}, upstream
            assert all(by_id(lines)[i]["source"] == upstream for i in down)
            own_deadline = max(w.deadline_s for w in widgets if w.upstream == upstream)
            assert total < own_deadline + SLACK_S, (upstream, mode, total)
            if mode == "hang":
                began = arrived[0]  # the begin line leaves before the composition starts
                times = dict(zip((w["id"] for w in lines[1:-1]), arrived[1:-1], strict=True))
                ok_times = [t for i, t in times.items() if i not in down]
                down_times = [times[i] for i in down]
                # the others did not wait for the hung one
                assert max(ok_times) < min(down_times), (ok_times, down_times)
                # the hung widgets waited for their own deadline (0.5 s), and no longer
                assert min(down_times) - began >= own_deadline - 0.1, (began, down_times)
                assert max(down_times) - began < own_deadline + HANG_SLACK_S, (began, down_times)
                # and the stream ended with them: nothing waited for the hung call
                assert arrived[-1] - began < own_deadline + HANG_SLACK_S, (began, arrived[-1])
    finally:
        gm.close()


async def test_a_hundred_concurrent_cold_requests_make_one_upstream_fan_out(
    sim: SimHandle, gm: Desktop
) -> None:
    async def one(client: httpx.AsyncClient, results: list[dict[str, Any]]) -> None:
        headers = gm.headers("GET", DASHBOARD, Accept="application/json")
        answer = await client.get(DASHBOARD, params={"propertyId": P}, headers=headers)
        assert answer.status_code == 200, answer.text
        results.append(answer.json())

    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=gm.bff_url, timeout=30, limits=limits) as client:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(100):
                    nursery.start_soon(one, client, results)
    assert len(results) == 100 and not any(r["partial"] for r in results)
    assert {len(r["widgets"]) for r in results} == {len(plan_for("gm").widgets)}
    for upstream in ("inventory", "pricing", "housekeeping", "maintenance", "billing", "ai"):
        assert reads(sim, upstream) == 1, upstream
    assert reads(sim, "reservation") == 4 and reads(sim, "property") == 2


def test_caches_are_isolated_by_role_and_tenant(
    sim: SimHandle, bff: ServiceProcess, gm: Desktop, fd: Desktop, redis_prefix: str
) -> None:
    gm_lines, _, _ = stream(gm)
    calls = reads(sim, "reservation")
    fd_lines, _, _ = stream(fd)  # same tenant and property, another role: its own composition
    check_shape(fd_lines, "front_desk")
    assert set(by_id(fd_lines)) != set(by_id(gm_lines))
    assert reads(sim, "reservation") == calls + 4
    other = Desktop(bff.url, sim.url, "fd.other", "tnt-other")
    try:
        denied = other.get(DASHBOARD, params={"propertyId": P})
        assert (
            denied.status_code == 403 and denied.json()["error"]["code"] == "PROPERTY_OUT_OF_SCOPE"
        )
        own = other.get(DASHBOARD, params={"propertyId": "prop-other-1"})
        assert own.status_code == 200 and own.json()["propertyId"] == "prop-other-1"
    finally:
        other.close()
    client = redis.Redis.from_url(REDIS_URL)
    pattern = f"{redis_prefix}:*:property:*:cache:*"
    try:  # (each entry is stored right after its composition finished)
        wait_until(lambda: len(list(client.scan_iter(pattern))) == 3, 5, "three entries")
        keys = [k.decode() for k in client.scan_iter(pattern)]
    finally:
        client.close()
    assert {k.split(":")[1] for k in keys} == {"tnt-demo", "tnt-other"}
    assert all(
        k.split(":")[1] == ("tnt-other" if "prop-other-1" in k else "tnt-demo") for k in keys
    )


def test_with_the_cache_tier_stopped_the_dashboard_is_still_served(
    start_bff: ServiceFactory, sim: SimHandle, log_dir: Any
) -> None:
    cache = PrivateRedis(log_dir)
    try:
        bff = start_bff(SIM_URL=sim.url, BFF_REDIS_CACHE_URL=cache.url)
        desk = Desktop(bff.url, sim.url, "fd.demo")
        try:
            warm, _, _ = stream(desk)
            check_shape(warm, "front_desk")
            cache.stop()
            lines, _, total = stream(desk)
            check_shape(lines, "front_desk")
            assert lines[-1] == {"type": "end", "partial": False}
            assert total < DEADLINE_S + SLACK_S
            board = desk.get("/bff/backoffice/v1/housekeeping/board", params={"propertyId": P})
            assert board.status_code == 200, board.text
        finally:
            desk.close()
    finally:
        cache.stop()


async def test_every_view_is_recorded_in_the_ledger(
    sim: SimHandle, fd: Desktop, db: Database
) -> None:
    stream(fd)
    fd.get("/bff/backoffice/v1/arrivals", params={"propertyId": P})
    sql = (
        "SELECT subject, payload::text AS payload, operator_id, device_id, stream FROM ledger"
        " WHERE subject LIKE '%.dashboard.%' OR subject LIKE '%.workbench.%'"
    )
    rows: list[Any] = []

    async def both_recorded() -> bool:
        rows[:] = await db.fetch(sql)
        return len(rows) >= 2

    await eventually_async(both_recorded, 10.0)
    viewed = next(r for r in rows if r["subject"].endswith("dashboard.viewed.v1"))
    opened = next(r for r in rows if r["subject"].endswith("workbench.opened.v1"))
    payload = msgspec.json.decode(viewed["payload"])
    assert viewed["device_id"] == fd.device_id and viewed["stream"].startswith("activity:")
    assert payload["propertyId"] == P and payload["partial"] is False
    assert payload["mode"] == "stream" and payload["completed"] and payload["durationMs"] > 0
    assert payload["operatorId"] == viewed["operator_id"]
    assert msgspec.json.decode(opened["payload"])["view"] == "arrivals"


def test_first_byte_comes_before_the_composition(sim: SimHandle, fd: Desktop) -> None:
    sim.fault("ai", "latency", latency_ms=300)
    lines, arrived, _ = stream(fd)
    check_shape(lines, "front_desk")
    # Relative, not absolute: on a busy machine the first line may come late, but it never
    # waits for the slow widget (it would then arrive with the last one).
    assert arrived[-1] >= 0.3 and arrived[-1] - arrived[0] >= 0.2


def test_a_domain_event_on_the_bus_invalidates_the_cached_dashboard(
    start_sim: Callable[..., SimHandle], start_bff: ServiceFactory, bus: Bus
) -> None:
    """Simulator → bus (embedded or Pub/Sub) → this BFF's subscriber → PropertyActor → cache
    voided."""
    sim = start_sim(
        SIM_BUS="auto", BFF_REDIS_SESSION_URL=REDIS_URL, BFF_REDIS_PREFIX=bus.prefix, **bus.env
    )
    bff = start_bff(SIM_URL=sim.url, BFF_INSTANCE_ID="dash-1", **bus.env)
    bus.assert_serves(bff)
    client = redis.Redis.from_url(REDIS_URL)
    desk = Desktop(bff.url, sim.url, "fd.demo")
    try:
        bus.wait_subscribed("dash-1", "melmastoon.reservation")
        first, _, _ = stream(desk)
        entry = f"{bus.prefix}:{T}:property:{P}:cache:dashboard:front_desk"
        wait_until(lambda: bool(client.exists(entry)), 5, "the dashboard to be cached")
        calls = reads(sim, "reservation")
        cached, _, _ = stream(desk)
        assert reads(sim, "reservation") == calls and by_id(cached) == by_id(first)
        sim.post(
            "/_sim/events",
            json={
                "subject": "melmastoon.reservation.checked_in.v1",
                "data": {"tenantId": T, "propertyId": P, "reservationId": "rsv-x"},
            },
        )
        wait_until(lambda: not client.exists(entry), 15, "the event to void the entry")
        again, _, _ = stream(desk)
        check_shape(again, "front_desk")
        assert reads(sim, "reservation") == calls + 4
    finally:
        desk.close()
        client.close()
