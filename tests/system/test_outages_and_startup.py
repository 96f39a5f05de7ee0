"""Two behaviours of a whole BFF process that only show end to end:

* a Postgres outage under heartbeat load is answered with 503s while it lasts, never crashes
  or escalates an actor, and readiness is back within seconds of Postgres (FAILURE_MODES F-20);
* an event that waits in the instance's subscription while the instance (re)starts is handled,
  not dropped: the subscriber starts only once every handler exists (edge/assembly.py).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import ServiceFactory, _create_and_migrate
from tests.support.ledger import ledger_subjects
from tests.support.procs import PrivatePostgres, free_port, wait_until
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.destroy()


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/health/ready", timeout=5)
    return response.status_code, response.json()


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    values = [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values)


class HeartbeatLoad:
    """Desktops heartbeating back to back in a thread, counting answers by phase."""

    def __init__(self, desks: list[Desktop]) -> None:
        self._desks = desks
        self.phase = "up"
        self.answers: dict[str, Counter[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def __enter__(self) -> HeartbeatLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def count(self, phase: str, outcome: str) -> int:
        return self.answers.get(phase, Counter())[outcome]

    def _run(self) -> None:
        while not self._stop.is_set():
            for desk in self._desks:
                self._n += 1
                path = f"/bff/backoffice/v1/devices/{desk.device_id}/heartbeat"
                phase = self.phase
                try:
                    answer = desk.post(
                        path,
                        json={"appVersion": APP_VERSION},
                        headers={"Idempotency-Key": f"hb-{self._n}"},
                    )
                    outcome = str(answer.status_code)
                    if answer.status_code != 200:
                        outcome += " " + answer.json()["error"]["code"]
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.answers.setdefault(phase, Counter())[outcome] += 1


def test_postgres_restart_under_heartbeat_load(
    start_bff: ServiceFactory, sim: SimHandle, private_pg: PrivatePostgres
) -> None:
    dsn = private_pg.url.rsplit("/", 1)[0] + "/bff"
    trio.run(_create_and_migrate, dsn, "bff", private_pg.url)
    admin = free_port()
    bff = start_bff(
        SIM_URL=sim.url,
        BFF_DATABASE_URL=dsn,
        BFF_DEPENDENCY_TIMEOUT_S="0.5",
        BFF_ADMIN_PORT=str(admin),
        BFF_ACTOR_ASK_TIMEOUT_S="2",
    )
    wait_until(lambda: _ready(bff.url)[0] == 200, 30, "ready")
    desks = [Desktop(bff.url, sim.url) for _ in range(3)]
    with HeartbeatLoad(desks) as load:
        wait_until(lambda: load.count("up", "200") >= 9, 30, "heartbeats while up")
        load.phase = "down"
        private_pg.stop()
        wait_until(lambda: _ready(bff.url)[0] == 503, 15, "readiness to see postgres down")
        wait_until(
            lambda: load.count("down", "503 SERVICE_UNAVAILABLE") >= 9, 60, "503s while down"
        )
        assert "postgres" in _ready(bff.url)[1]["down"]
        load.phase = "restarting"
        private_pg.start()
        back_at = time.monotonic()
        wait_until(lambda: _ready(bff.url)[0] == 200, 5, "readiness within 5 s of postgres")
        ready_after = time.monotonic() - back_at
        load.phase = "back"
        wait_until(lambda: load.count("back", "200") >= 9, 30, "heartbeats after the outage")

    outcomes = {o for phase in load.answers.values() for o in phase}
    assert outcomes <= {"200", "503 SERVICE_UNAVAILABLE"}, load.answers  # never a 500
    assert ready_after < 5.0
    assert _metric(bff.url, "bff_actor_escalations_total") == 0
    assert _metric(bff.url, "bff_actor_restarts_total") == 0
    assert _metric(bff.url, "bff_actor_dependency_unavailable_total") >= 1  # answered, not crashed
    actors = httpx.get(f"http://127.0.0.1:{admin}/admin/actors?kind=device", timeout=5).json()
    assert actors["failed"] == 0
    assert all(a["restarts"] == 0 for a in actors["actors"])


def test_sign_out_during_a_postgres_outage_still_revokes_everywhere(
    start_bff: ServiceFactory, sim: SimHandle, private_pg: PrivatePostgres
) -> None:
    """The ledger cannot record the sign-out while Postgres is down, but the session must end
    all the same: the revocation marker (Redis) and iam's revocation do not need Postgres."""
    dsn = private_pg.url.rsplit("/", 1)[0] + "/bff"
    trio.run(_create_and_migrate, dsn, "bff", private_pg.url)
    bff = start_bff(
        SIM_URL=sim.url,
        BFF_DATABASE_URL=dsn,
        BFF_DEPENDENCY_TIMEOUT_S="0.5",
        BFF_ACTOR_ASK_TIMEOUT_S="2",
    )
    desk = Desktop(bff.url, sim.url)
    assert desk.get(WHOAMI).status_code == 200
    private_pg.stop()
    out = desk.post("/bff/backoffice/v1/auth/sign-out")
    assert out.status_code == 200, out.text
    assert out.json()["signedOut"] is True and out.json()["iamRevoked"] is True
    assert any(c["path"].endswith(f"/{desk.session_id}/revoke") for c in sim.calls("iam"))
    rejected = desk.get(WHOAMI)
    assert rejected.status_code == 401 and rejected.json()["error"]["code"] == "SESSION_EXPIRED"


def test_an_event_waiting_while_the_instance_starts_is_handled(
    start_bff: ServiceFactory, bus_sim: SimHandle, database_url: str
) -> None:
    """The instance dies (no clean retire: its subscription keeps what arrives), a
    force-logout is published meanwhile, and the restarted instance consumes it first thing
    on start-up — before any request could have warmed anything up."""
    env = {"SIM_URL": bus_sim.url, "BFF_BUS": "embedded", "BFF_INSTANCE_ID": "bff-window"}
    first = start_bff(**env)
    desk = Desktop(first.url, bus_sim.url)
    assert desk.get(WHOAMI).status_code == 200  # the session is open on the device's actor
    first.signal(signal.SIGKILL)
    first.wait(15)

    bus_sim.post(f"/_sim/iam/sessions/{desk.session_id}/revoke", json={"reason": "security"})
    second = start_bff(**env)
    desk.bff_url = second.url
    desk.http = httpx.Client(base_url=second.url, timeout=15.0)

    def closed() -> bool:
        trail = ledger_subjects(database_url, f"device:{desk.device_id}")
        return any(s.endswith("session.closed.v1") for s, _ in trail)

    wait_until(closed, 20, "the waiting force-logout to be handled")
    rejected = desk.get(WHOAMI)
    assert rejected.status_code == 401 and rejected.json()["error"]["code"] == "SESSION_EXPIRED"
    assert "dropped" not in second.output()
