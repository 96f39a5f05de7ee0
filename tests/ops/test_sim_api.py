"""The simulator as a process: today's data in each property's time zone, tenant isolation,
state changes visible in later reads, idempotent replays, domain events, faults."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from schemas.upstream.housekeeping import HousekeepingTask, TaskList
from schemas.upstream.property import RoomList
from schemas.upstream.reservation import Reservation, ReservationList
from tests.support.sim import SimHandle

RES = "/reservation/v1/tenants/tnt-demo/properties/prop-demo-1"
HK = "/housekeeping/v1/tenants/tnt-demo/properties/prop-demo-1"


def _arrivals(sim: SimHandle) -> ReservationList:
    answer = sim.http.get(f"{RES}/arrivals")
    assert answer.status_code == 200
    return msgspec.json.decode(answer.content, type=ReservationList)


def _bookable(sim: SimHandle) -> Reservation:
    return next(r for r in _arrivals(sim).items if r.status == "booked")


def test_arrivals_default_to_today_in_the_property_time_zone(sim: SimHandle) -> None:
    for pid, tz in (("prop-demo-1", "Asia/Kolkata"), ("prop-other-1", "Europe/Amsterdam")):
        tenant = "tnt-demo" if pid == "prop-demo-1" else "tnt-other"
        answer = sim.http.get(f"/reservation/v1/tenants/{tenant}/properties/{pid}/arrivals")
        listing = msgspec.json.decode(answer.content, type=ReservationList)
        assert listing.date == datetime.now(ZoneInfo(tz)).date()
        assert listing.total == len(listing.items) > 0
        assert {r.arrival_date for r in listing.items} == {listing.date}


def test_a_tenant_never_sees_another_tenants_property(sim: SimHandle) -> None:
    answer = sim.http.get("/reservation/v1/tenants/tnt-other/properties/prop-demo-1/arrivals")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"


def test_check_in_changes_later_reads_and_emits_an_event(sim: SimHandle) -> None:
    res = _bookable(sim)
    answer = sim.http.post(
        f"{RES}/reservations/{res.id}/check-in", json={"operatorId": "opr-fd-demo"}
    )
    assert answer.status_code == 200, answer.text
    checked_in = msgspec.json.decode(answer.content, type=Reservation)
    assert checked_in.status == "checked_in" and checked_in.room_id
    in_house = msgspec.json.decode(sim.http.get(f"{RES}/in-house").content, type=ReservationList)
    assert res.id in {r.id for r in in_house.items}
    rooms = msgspec.json.decode(
        sim.http.get("/property/v1/tenants/tnt-demo/properties/prop-demo-1/rooms").content,
        type=RoomList,
    )
    assert next(r for r in rooms.items if r.id == checked_in.room_id).occupied
    [event] = sim.events("melmastoon.reservation.checked_in")
    assert event["tenant"] == "tnt-demo"
    assert event["data"]["reservationId"] == res.id and event["data"]["propertyId"] == "prop-demo-1"
    again = sim.http.post(
        f"{RES}/reservations/{res.id}/check-in", json={"operatorId": "opr-fd-demo"}
    )
    assert again.status_code == 409


def test_idempotency_key_replays_the_first_answer(sim: SimHandle) -> None:
    res = _bookable(sim)
    url = f"{RES}/reservations/{res.id}/check-in"
    headers = {"Idempotency-Key": "key-1"}
    first = sim.http.post(url, json={"operatorId": "opr-fd-demo"}, headers=headers)
    second = sim.http.post(url, json={"operatorId": "opr-fd-demo"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    reused = sim.http.post(url, json={"operatorId": "opr-gm-demo"}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    calls = sim.calls("reservation")
    assert [(c["idempotencyKey"], c["replayed"], c["status"]) for c in calls] == [
        ("key-1", False, 200),
        ("key-1", True, 200),
        ("key-1", False, 422),
    ]
    assert len(sim.events("melmastoon.reservation.checked_in")) == 1


def test_check_out_dirties_the_room_and_creates_a_housekeeping_task(sim: SimHandle) -> None:
    in_house = msgspec.json.decode(sim.http.get(f"{RES}/in-house").content, type=ReservationList)
    today = sim.today()
    res = next(r for r in in_house.items if r.departure_date > today)  # leaves early
    answer = sim.http.post(
        f"{RES}/reservations/{res.id}/check-out", json={"operatorId": "opr-fd-demo"}
    )
    assert answer.status_code == 200
    tasks = msgspec.json.decode(sim.http.get(f"{HK}/tasks").content, type=TaskList)
    mine = [t for t in tasks.items if t.room_id == res.room_id and t.kind == "checkout_clean"]
    assert len(mine) == 1 and mine[0].status == "pending"
    room = next(
        r
        for r in msgspec.json.decode(
            sim.http.get("/property/v1/tenants/tnt-demo/properties/prop-demo-1/rooms").content,
            type=RoomList,
        ).items
        if r.id == res.room_id
    )
    assert not room.occupied and room.housekeeping_status == "dirty"
    subjects = [e["subject"] for e in sim.events()]
    assert subjects == [
        "melmastoon.reservation.checked_out.v1",
        "melmastoon.housekeeping.task.created.v1",
    ]
    [created] = sim.events("melmastoon.housekeeping.task.created")
    assert created["data"]["taskId"] == mine[0].id


def test_housekeeping_transitions_follow_the_rules(sim: SimHandle) -> None:
    tasks = msgspec.json.decode(
        sim.http.get(f"{HK}/tasks", params={"status": "in_progress"}).content, type=TaskList
    )
    task = tasks.items[0]
    wrong = sim.http.post(
        f"{HK}/tasks/{task.id}/transition", json={"to": "inspected", "operatorId": "opr-hk-demo"}
    )
    assert wrong.status_code == 409
    done = sim.http.post(
        f"{HK}/tasks/{task.id}/transition", json={"to": "done", "operatorId": "opr-hk-demo"}
    )
    assert msgspec.json.decode(done.content, type=HousekeepingTask).status == "done"
    rooms = msgspec.json.decode(
        sim.http.get("/property/v1/tenants/tnt-demo/properties/prop-demo-1/rooms").content,
        type=RoomList,
    )
    if task.kind in ("checkout_clean", "stayover_service", "deep_clean"):
        assert next(r for r in rooms.items if r.id == task.room_id).housekeeping_status == "clean"


def test_sim_events_endpoint_publishes_any_event(sim: SimHandle) -> None:
    answer = sim.http.post(
        "/_sim/events",
        json={
            "subject": "melmastoon.theme.published.v1",
            "data": {"tenantId": "tnt-demo", "themeId": "theme-tnt-demo", "version": 2},
        },
    )
    assert answer.status_code == 202
    [event] = sim.events("melmastoon.theme")
    assert event["eventId"] == answer.json()["eventId"] and event["tenant"] == "tnt-demo"
    bad = sim.http.post(
        "/_sim/events", json={"subject": "melmastoon.theme.published.v1", "data": {"themeId": "x"}}
    )
    assert bad.status_code == 400 and "tenantId" in bad.json()["error"]["message"]


def test_faults_clear_per_service_or_all(sim: SimHandle) -> None:
    sim.fault("pricing", "error")
    sim.fault("analytics", "error")
    sim.http.delete("/_sim/faults", params={"service": "pricing"}).raise_for_status()
    assert [f["service"] for f in sim.get("/_sim/faults")] == ["analytics"]
    sim.clear_faults()
    assert sim.get("/_sim/faults") == []


def test_error_fault_answers_5xx_and_reset_clears_it(sim: SimHandle) -> None:
    sim.fault("pricing", "error", status=500)
    answer = sim.http.get("/pricing/v1/tenants/tnt-demo/properties/prop-demo-1/rates")
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "INJECTED_FAULT"
    assert sim.http.get(f"{RES}/arrivals").status_code == 200  # other upstreams unaffected
    sim.reset()
    assert sim.http.get("/pricing/v1/tenants/tnt-demo/properties/prop-demo-1/rates").is_success


def test_latency_fault_delays_the_answer(sim: SimHandle) -> None:
    sim.fault("reservation", "latency", latency_ms=250)
    started = time.monotonic()
    assert sim.http.get(f"{RES}/arrivals").status_code == 200
    assert time.monotonic() - started >= 0.25


def test_hang_fault_never_answers(sim: SimHandle) -> None:
    sim.fault("reservation", "hang")
    with pytest.raises(httpx.ReadTimeout):
        sim.http.get(f"{RES}/arrivals", timeout=0.3)
    [call] = sim.calls("reservation", kind="all")
    assert call["fault"] == "hang" and call["status"] == 0


def test_drift_fault_breaks_the_schema(sim: SimHandle) -> None:
    sim.fault("reservation", "drift")
    answer = sim.http.get(f"{RES}/arrivals")
    assert answer.status_code == 200
    with pytest.raises(msgspec.ValidationError, match=r"items\[0\]"):
        msgspec.json.decode(answer.content, type=ReservationList)


def test_fault_rate_applies_to_a_share_of_requests(sim: SimHandle) -> None:
    sim.fault("analytics", "error", rate=0.5)
    statuses = [
        sim.http.get("/analytics/v1/tenants/tnt-demo/properties/prop-demo-1/kpis").status_code
        for _ in range(60)
    ]
    assert 10 <= statuses.count(503) <= 50 and 10 <= statuses.count(200) <= 50


def test_unknown_fault_service_is_rejected(sim: SimHandle) -> None:
    answer = sim.http.post("/_sim/faults", json={"service": "nope", "mode": "error"})
    assert answer.status_code == 400
