"""The workbench routes over real HTTP (real BFF, simulator, Redis, Postgres, DPoP desktops):
validation, bounds and order, 502 when reservation-service is down (F-4), stale boards while
housekeeping/maintenance are down (F-7, F-8)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.support.dashboard import P, T
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


def get(desk: Desktop, path: str, **params: Any) -> httpx.Response:
    return desk.get(BASE + path, params={"propertyId": P, **params})


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    message: str = body["message"]
    return message


def test_every_view_answers(fd: Desktop) -> None:
    for path in ("/today", "/arrivals", "/departures", "/in-house"):
        response = get(fd, path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["propertyId"] == P
        assert response.headers["cache-control"] == "no-store"
    hk = get(fd, "/housekeeping/board").json()
    mt = get(fd, "/maintenance/board").json()
    assert hk["stale"] is False and mt["stale"] is False and hk["items"] and mt["items"]


def test_dates_and_limits_are_validated(fd: Desktop) -> None:
    assert "date" in error(get(fd, "/arrivals", date="2026-13-45"), 400, "VALIDATION_FAILED")
    assert "date" in error(get(fd, "/departures", date="tomorrow"), 400, "VALIDATION_FAILED")
    assert "limit" in error(get(fd, "/in-house", limit="0"), 400, "VALIDATION_FAILED")
    assert "limit" in error(get(fd, "/arrivals", limit="501"), 400, "VALIDATION_FAILED")
    assert "propertyId" in error(fd.get(BASE + "/today"), 400, "VALIDATION_FAILED")


def test_lists_are_bounded_and_deterministically_sorted(fd: Desktop, sim: SimHandle) -> None:
    full = get(fd, "/in-house").json()
    cut = get(fd, "/in-house", limit="5").json()
    assert full["total"] > 5 and len(full["items"]) == full["total"]
    assert cut["total"] == full["total"] and cut["truncated"] is True
    assert cut["items"] == full["items"][:5]
    day = sim.today().isoformat()
    arrivals = get(fd, "/arrivals", date=day).json()
    assert arrivals["date"] == day
    etas = [a["eta"] or "99:99" for a in arrivals["items"]]
    assert etas == sorted(etas)


def test_reservation_down_is_502_for_its_views(fd: Desktop, sim: SimHandle) -> None:
    sim.fault("reservation", "drift")  # (first: failures below open the circuit)
    error(get(fd, "/departures", date="2026-01-06"), 502, "SCHEMA_DRIFT")
    sim.fault("reservation", "error")
    for path in ("/today", "/arrivals", "/departures", "/in-house"):
        error(get(fd, path), 502, "UPSTREAM_UNAVAILABLE")
    error(get(fd, "/arrivals", date="2026-01-05"), 502, "UPSTREAM_UNAVAILABLE")


def test_boards_are_served_stale_while_their_upstream_is_down(
    fd: Desktop, sim: SimHandle, redis_prefix: str
) -> None:
    fresh = get(fd, "/housekeeping/board").json()
    key = f"{redis_prefix}:{T}:property:{P}:last:view:housekeepingBoard"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        wait_until(lambda: bool(client.exists(key)), 5, "the last good board to be kept")
        client.hincrby(f"{redis_prefix}:{T}:property:{P}:cache-gen", "view:housekeepingBoard", 1)
    finally:
        client.close()
    sim.fault("housekeeping", "error")
    stale = get(fd, "/housekeeping/board")
    assert stale.status_code == 200, stale.text
    body = stale.json()
    assert body["stale"] is True and body["asOf"] == fresh["asOf"]
    assert body["items"] == fresh["items"]
    sim.fault("maintenance", "hang")  # never fetched before: nothing to fall back on
    error(get(fd, "/maintenance/board"), 502, "UPSTREAM_UNAVAILABLE")


def test_another_property_is_out_of_scope(bff: ServiceProcess, sim: SimHandle) -> None:
    hk = Desktop(bff.url, sim.url, "hk.demo")
    try:
        response = hk.get(BASE + "/housekeeping/board", params={"propertyId": "prop-demo-2"})
        error(response, 403, "PROPERTY_OUT_OF_SCOPE")
    finally:
        hk.close()
