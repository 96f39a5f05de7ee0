"""A BFF process stops and a fresh one starts on the same database: a device's actor is
rebuilt from the ledger in the new process (nothing of the old process's memory survives)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import free_port
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"


def device_state(admin: str, desk: Desktop) -> dict[str, Any]:
    answer = httpx.post(
        f"{admin}/admin/actors/device/{desk.device.tenant_id}/{desk.device_id}/ask",
        json={"type": "getState"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["reply"]
    return state


def live_devices(admin: str) -> list[dict[str, Any]]:
    listing = httpx.get(f"{admin}/admin/actors", params={"kind": "device"}, timeout=10).json()
    actors: list[dict[str, Any]] = listing["actors"]
    return actors


def test_a_fresh_process_rebuilds_the_device_actor_from_the_ledger(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    ports = free_port(), free_port()
    first_admin, second_admin = (f"http://127.0.0.1:{port}" for port in ports)
    first = start_bff(SIM_URL=sim.url, BFF_ADMIN_PORT=str(ports[0]), BFF_HEARTBEAT_SAMPLE_RATE="1")
    desk = Desktop(first.url, sim.url)
    try:
        # a session opened and signed out, a second one opened, a heartbeat recorded
        earlier = desk.session_id
        assert desk.get(WHOAMI).status_code == 200
        assert desk.post("/bff/backoffice/v1/auth/sign-out").status_code == 200
        desk.device.sign_in("fd.demo")
        assert desk.session_id != earlier and desk.get(WHOAMI).status_code == 200
        beat = desk.post(
            f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat",
            json={"appVersion": APP_VERSION},
            headers={"Idempotency-Key": "hb-1"},
        )
        assert beat.status_code == 200, beat.text
        before = device_state(first_admin, desk)
        assert before["sessionId"] == desk.session_id and before["closedSessions"] == [earlier]
        assert first.stop() == 0
    finally:
        desk.close()

    start_bff(SIM_URL=sim.url, BFF_ADMIN_PORT=str(ports[1]))  # same database and Redis prefix
    assert live_devices(second_admin) == []  # the new process starts with no actors
    after = device_state(second_admin, desk)  # activates it: replay of the device's stream
    trail = ledger_subjects(database_url, f"device:{desk.device_id}")
    assert [s.rsplit(".", 2)[-2] for s, _ in trail] == ["opened", "closed", "opened", "heartbeat"]
    assert after["version"] == len(trail) == before["version"]
    assert after["sessionId"] == desk.session_id and after["closedSessions"] == [earlier]
    assert after["operatorId"] == before["operatorId"] is not None
    assert after == before  # ledger, session tier and status row: all rebuilt equal
    [actor] = live_devices(second_admin)
    assert (actor["id"], actor["restarts"], actor["processed"]) == (desk.device_id, 0, 1)
