"""One instance, two worker processes (``BFF_WORKERS=2``, edge/workers.py) over real Postgres,
Redis, the embedded bus and the simulator: both serve the one port, and each is a full member
of the cluster, exactly as a second instance is.

Which worker holds a device's stream is read from its ownership record (``sse:owner`` =
``"<node> <token>"``, node = the worker's instance id ``<instance>-w<i>``); which one answered a
request, from ``/health/live`` (``worker``). The kernel picks the worker per connection, so a
test that needs a stream on each worker opens streams until it has one on each, under a
deadline (never a fixed sleep).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio

from edge.bus.relay import RELAY_LOCK
from edge.settings import SettingsError, load_settings
from edge.workers import (
    RestartBudget,
    Supervisor,
    available_cpus,
    cgroup_cpu_quota,
    check_plan,
    exit_status,
    worker_count,
    worker_env,
)
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess, wait_until
from tests.support.pubsub import Bus
from tests.support.sim import SimHandle
from tests.support.sse import SseReader
from tests.support.stack import free_run

T, P1 = "tnt-demo", "prop-demo-1"
TOPICS = ("melmastoon.iam", "melmastoon.alert", "melmastoon.ai")
WHOAMI = "/bff/backoffice/v1/_test/whoami"
START_S = 90  # two workers starting at once on a shared 2-core machine


# --- the plan (no processes) -------------------------------------------------------------------


def test_the_default_is_one_worker_per_cpu_and_a_worker_never_supervises() -> None:
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    assert worker_count(load_settings({})) == available_cpus()
    assert worker_count(load_settings({"BFF_WORKERS": "3"})) == 3
    assert worker_count(load_settings({"BFF_WORKERS": "3", "BFF_WORKER_INDEX": "1"})) == 1
    assert worker_count(load_settings({"PORT": "0"})) == 1  # workers could not share "any port"


def test_plans_the_workers_cannot_run_are_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="BFF_WORKERS=2 needs a fixed PORT"):
        check_plan(load_settings({"PORT": "0", "BFF_WORKERS": "2"}), 2)
    with pytest.raises(SettingsError, match=r"BFF_ADMIN_PORT=65535 .* worker 1"):
        check_plan(load_settings({"BFF_ADMIN_PORT": "65535", "BFF_WORKERS": "2"}), 2)
    check_plan(load_settings({"BFF_ADMIN_PORT": "65535", "BFF_ADMIN": "off"}), 2)


def test_each_worker_gets_its_own_instance_id_and_admin_port() -> None:
    settings = load_settings({"BFF_ADMIN_PORT": "9000"})
    env = worker_env(settings, {"BFF_WORKERS": "0", "KEEP": "me"}, "node-a", 1)
    assert env["BFF_INSTANCE_ID"] == "node-a-w1" and env["BFF_ADMIN_PORT"] == "9001"
    assert env["BFF_WORKERS"] == "1" and env["BFF_WORKER_INDEX"] == "1" and env["KEEP"] == "me"
    assert env["BFF_WORKER_SUPERVISOR"] == str(os.getpid())
    off = worker_env(load_settings({"BFF_ADMIN_PORT": "0"}), {}, "node-a", 1)
    assert "BFF_ADMIN_PORT" not in off  # disabled stays disabled


def test_the_cgroup_quota_is_the_tightest_from_the_process_cgroup_up(tmp_path: Path) -> None:
    membership = tmp_path / "cgroup"
    membership.write_text("0::/pod/app\n")
    (tmp_path / "pod" / "app").mkdir(parents=True)
    assert cgroup_cpu_quota(tmp_path, membership) is None  # no cpu.max anywhere
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "pod" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "pod" / "app" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, membership) == 1.5
    (tmp_path / "pod" / "app" / "cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_quota(tmp_path, membership) == 0.5


def test_the_restart_budget_counts_over_a_window_and_exit_statuses_read_like_a_shell() -> None:
    budget = RestartBudget(2, 60.0)
    assert [budget.spend(0.0), budget.spend(1.0), budget.spend(2.0)] == [1, 2, None]
    assert budget.spend(60.5) == 2  # the first one left the window
    assert (exit_status(0), exit_status(1), exit_status(-signal.SIGKILL)) == (0, 1, 137)


async def test_workers_still_starting_when_the_stop_comes_count_as_stopped_cleanly() -> None:
    """SIGTERM can reach a worker before its handler is installed (Cloud Run may stop an
    instance right after start): it dies of the signal the supervisor sent, which is the stop
    that was asked for, so the instance still exits 0."""
    bare = [sys.executable, "-c", "import time; time.sleep(60)"]  # no SIGTERM handler at all
    supervisor = Supervisor(load_settings({"BFF_ADMIN_PORT": "0"}), 2, command=bare)
    status: list[int] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                status.append(await supervisor.run())

            nursery.start_soon(run)
            while len(supervisor._live) < 2:  # noqa: ASYNC110 - no event says "all started"
                await trio.sleep(0.01)  # polling a condition under the deadline above
            os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's own signal receiver
    assert status == [0]


# --- two workers, one port ---------------------------------------------------------------------


@dataclass
class Instance:
    """A supervisor (``proc``) running two workers as instance ``name``, and its simulator."""

    proc: ServiceProcess
    sim: SimHandle
    name: str
    prefix: str

    @property
    def url(self) -> str:
        return self.proc.url

    def log(self) -> list[dict[str, Any]]:
        """The instance's JSON log lines (the supervisor's and both workers')."""
        found = []
        for line in self.proc.output().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # not a log line (or one still being written)
        return [e for e in found if isinstance(e, dict)]

    def pids(self) -> dict[int, int]:
        """Each worker's current pid, from the supervisor's ``worker started`` lines."""
        return {
            e["worker"]: e["pid"]
            for e in self.log()
            if e["logger"] == "bff.workers" and e["msg"] == "worker started"
        }

    def desk(self, username: str = "fd.demo") -> Desktop:
        desk = Desktop(self.url, self.sim.url, username, T)
        assert desk.get(WHOAMI).status_code == 200  # the session is open
        return desk

    def holder(self, desk: Desktop) -> int | None:
        """The worker holding ``desk``'s stream, from its ownership record."""
        client = redis.Redis.from_url(REDIS_URL)
        try:
            owner = client.get(f"{self.prefix}:{T}:device:{desk.device_id}:sse:owner")
        finally:
            client.close()
        if owner is None:
            return None
        node = (owner.decode() if isinstance(owner, bytes) else owner).split(" ", 1)[0]
        assert node.startswith(f"{self.name}-w"), node
        return int(node.removeprefix(f"{self.name}-w"))


def answering_worker(url: str) -> int | None:
    """Which worker answers ``/health/live`` on a new connection (None: none did)."""
    try:
        answer = httpx.get(f"{url}/health/live", timeout=5)
    except httpx.TransportError:
        return None
    assert answer.status_code == 200, answer.text
    worker: int = answer.json()["worker"]
    return worker


def wait_until_both_answer(url: str) -> None:
    seen: set[int | None] = set()

    def both() -> bool:
        seen.add(answering_worker(url))
        return {0, 1} <= seen

    wait_until(both, START_S, "both workers to answer")


@pytest.fixture
def start_instance(
    start_bff: ServiceFactory, bus_sim: SimHandle, redis_prefix: str
) -> Callable[..., Instance]:
    """``start_instance(**env)``: an instance of two workers on this test's embedded bus, both
    serving and subscribed."""

    def start(**env: str) -> Instance:
        name = f"wk-{uuid.uuid4().hex[:6]}"
        proc = start_bff(
            SIM_URL=bus_sim.url,
            BFF_WORKERS="2",
            BFF_INSTANCE_ID=name,
            BFF_SSE_KEEPALIVE_S="0.3",
            BFF_SSE_OPENS_PER_MINUTE="1000",
            **env,
        )
        wait_until_both_answer(proc.url)
        bus = Bus("embedded", redis_prefix)
        for worker in (0, 1):
            for topic in TOPICS:
                bus.wait_subscribed(f"{name}-w{worker}", topic, timeout=START_S)
        return Instance(proc, bus_sim, name, redis_prefix)

    return start


@pytest.fixture
def instance(start_instance: Callable[..., Instance]) -> Instance:
    return start_instance()


def streams_on_both(instance: Instance) -> Iterator[tuple[int, Desktop, SseReader]]:
    """One stream held by each worker, each of its own device: ``(worker, desk, stream)``.
    Devices whose stream landed on a worker already covered are closed and dropped."""
    held: dict[int, tuple[Desktop, SseReader]] = {}

    def open_one() -> bool:
        desk = instance.desk()
        stream = SseReader(desk)
        worker = instance.holder(desk)
        assert worker in (0, 1)
        if worker in held:
            stream.close()
        else:
            held[worker] = (desk, stream)
        return len(held) == 2

    wait_until(open_one, 60, "a stream on each worker", interval=0)
    for worker, (desk, stream) in sorted(held.items()):
        yield worker, desk, stream


def revoke(sim: SimHandle, desk: Desktop) -> None:
    sim.post(f"/_sim/iam/sessions/{desk.session_id}/revoke", json={"reason": "security"})


def raise_alert(sim: SimHandle) -> str:
    alert_id = f"al-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "tenantId": T,
        "propertyId": P1,
        "alertId": alert_id,
        "severity": "high",
        "category": "maintenance",
        "title": "Boiler pressure low",
        "occurredAt": now,
    }
    sim.post("/_sim/events", json={"subject": "melmastoon.alert.raised.v1", "data": data})
    return alert_id


def test_both_workers_serve_the_one_port_with_their_own_admin_endpoints(
    start_instance: Callable[..., Instance],
) -> None:
    admin = free_run(2)  # worker i's admin endpoint: admin + i, both free (not just unlistened)
    instance = start_instance(BFF_ADMIN_PORT=str(admin))
    assert set(instance.pids()) == {0, 1} and len(set(instance.pids().values())) == 2
    serving = [e for e in instance.log() if e["msg"] == "serving"]
    assert sorted(e["worker"] for e in serving) == [0, 1]
    assert all(e["binds"] == serving[0]["binds"] for e in serving)  # the same port
    for worker in (0, 1):
        answer = httpx.get(f"http://127.0.0.1:{admin + worker}/admin/actors", timeout=5)
        assert answer.status_code == 200, answer.text


def live_requests(url: str) -> float:
    """``bff_http_requests_total`` of ``GET /health/live`` 200 in one scrape of ``/metrics``."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    wanted = 'method="GET",route="/health/live",status="200"'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bff_http_requests_total{") and wanted in line
    )


def test_a_scrape_of_either_worker_reports_the_whole_instance(instance: Instance) -> None:
    """One scrape reaches one worker (SO_REUSEPORT picks it): each answers for both, counters
    summed, so the instance's figures never depend on which worker was asked."""
    before = live_requests(instance.url)
    served = Counter(answering_worker(instance.url) for _ in range(40))
    assert set(served) == {0, 1}, served  # both workers served some of them
    # a request is counted just after its answer is sent: wait for the last one, then every
    # scrape, whichever worker it reaches, must say the same
    wait_until(lambda: live_requests(instance.url) == before + 40, 10, "the 40 counted")
    totals = {live_requests(instance.url) for _ in range(8)}
    assert totals == {before + 40}, (before, totals)
    gauges = httpx.get(f"{instance.url}/metrics", timeout=5).text
    assert "bff_http_in_flight " in gauges  # live gauges: summed over workers, no pid label


def test_a_force_logout_reaches_a_stream_held_by_either_worker(instance: Instance) -> None:
    held = list(streams_on_both(instance))
    for _, desk, _ in held:
        revoke(instance.sim, desk)
    for _, desk, stream in held:
        ended = stream.next()
        assert (ended.event, ended.data) == (
            "session",
            {"kind": "force_logout", "reason": "security"},
        )
        assert stream.rest() == []
        # and the next request is refused, whichever worker reads the revocation marker
        refused = httpx.get(f"{instance.url}{WHOAMI}", headers=desk.headers("GET", WHOAMI))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "SESSION_EXPIRED"


def test_a_newer_stream_replaces_an_older_one_held_by_the_other_worker(
    instance: Instance,
) -> None:
    desk = instance.desk()
    older = SseReader(desk)
    older_worker = instance.holder(desk)
    crossed: list[SseReader] = []

    def open_newer() -> bool:
        nonlocal older, older_worker
        newer = SseReader(desk)
        worker = instance.holder(desk)
        replaced = older.next()
        assert (replaced.event, replaced.data) == ("session", {"kind": "replaced"})
        assert older.rest() == []
        if worker != older_worker:
            crossed.append(newer)
            return True
        older, older_worker = newer, worker
        return False

    wait_until(open_newer, 60, "a newer stream on the other worker", interval=0)
    newer = crossed[0]
    alert_id = raise_alert(instance.sim)
    assert newer.next().data["alertId"] == alert_id
    newer.close()


def _sql(database_url: str, query: str, *args: object) -> list[Any]:
    import asyncpg
    import trio_asyncio

    async def fetch() -> list[Any]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                row = await trio_asyncio.aio_as_trio(conn.fetchrow)(query, *args)
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        return list(row) if row is not None else []

    return trio.run(fetch)


def relay_holders(database_url: str) -> int:
    """Sessions holding the relay's advisory lock in this test's database."""
    (count,) = _sql(
        database_url,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objid::bigint = $1"
        " AND d.datname = current_database()",
        RELAY_LOCK,
    )
    return int(count)


def relay_caught_up(database_url: str) -> bool:
    """Every ledger row is published (the relay's cursor is at the ledger's last position)."""
    head, cursor = _sql(
        database_url,
        "SELECT (SELECT max(position) FROM ledger),"
        " (SELECT position FROM relay_cursor WHERE name = 'bus')",
    )
    return head is not None and cursor is not None and cursor >= head


def leaders(instance: Instance) -> list[int]:
    """The workers that logged taking the relay's lead, in order."""
    return [e["worker"] for e in instance.log() if e["msg"] == "relay leading"]


def test_exactly_one_worker_leads_the_relay_and_another_takes_over_when_it_dies(
    instance: Instance, database_url: str
) -> None:
    wait_until(lambda: len(leaders(instance)) == 1, 30, "a worker to lead the relay")
    assert relay_holders(database_url) == 1
    (leader,) = leaders(instance)
    instance.desk()  # a session opened: a ledger row to publish
    wait_until(lambda: relay_caught_up(database_url), 30, "the relay to publish")
    assert leaders(instance) == [leader]  # the other worker stood by
    os.kill(instance.pids()[leader], signal.SIGKILL)
    wait_until(lambda: len(leaders(instance)) == 2, 60, "a worker to take the lead")
    assert relay_holders(database_url) == 1
    instance.desk()
    wait_until(lambda: relay_caught_up(database_url), 30, "the new leader to publish")


def test_sigterm_drains_every_stream_and_every_process_exits_0(instance: Instance) -> None:
    held = list(streams_on_both(instance))
    pids = instance.pids()
    instance.proc.signal(signal.SIGTERM)
    for _, _, stream in held:
        drained = stream.next()
        assert (drained.event, drained.data) == ("session", {"kind": "reconnect"})
        assert stream.rest() == []
    assert instance.proc.wait(60) == 0
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived its supervisor"
    log = instance.log()
    drained_by = sorted(e["worker"] for e in log if e["msg"] == "streams drained")
    assert drained_by == [0, 1]
    (stopped,) = [e for e in log if e["msg"] == "workers stopped"]
    assert stopped["status"] == 0 and stopped["restarts"] == 0


def test_a_killed_worker_is_restarted_and_the_other_keeps_serving(instance: Instance) -> None:
    held = list(streams_on_both(instance))
    (_, _, survivor), (_, _, lost) = held
    before = instance.pids()
    os.kill(before[1], signal.SIGKILL)
    assert lost.rest() == []  # its stream ended with its process
    wait_until(lambda: _died(instance), 30, "the supervisor to see worker 1 die")
    # worker 0 goes on serving: its stream gets the next alert, new connections are answered
    alert_id = raise_alert(instance.sim)
    assert survivor.next_of("alert").data["alertId"] == alert_id
    assert answering_worker(instance.url) is not None
    wait_until(lambda: instance.pids()[1] != before[1], 30, "worker 1 to be started again")
    wait_until_both_answer(instance.url)
    assert instance.pids()[0] == before[0]
    (died,) = [e for e in instance.log() if e["msg"] == "worker died; restarting it"]
    assert (died["worker"], died["status"], died["restarts"]) == (1, 137, 1)
    survivor.close()


def _died(instance: Instance) -> bool:
    return any(e["msg"] == "worker died; restarting it" for e in instance.log())


def test_past_the_restart_budget_the_supervisor_stops_everything_and_exits_1(
    start_instance: Callable[..., Instance],
) -> None:
    instance = start_instance(BFF_WORKERS_MAX_RESTARTS="1")
    first = instance.pids()
    os.kill(first[1], signal.SIGKILL)
    wait_until(lambda: instance.pids()[1] != first[1], 30, "worker 1 to be started again")
    os.kill(instance.pids()[1], signal.SIGKILL)
    assert instance.proc.wait(60) == 1
    assert not Path(f"/proc/{first[0]}").exists(), "worker 0 outlived the supervisor"
    (gave_up,) = [e for e in instance.log() if e["level"] == "CRITICAL"]
    assert gave_up["msg"] == "worker died past the restart budget; stopping the instance"
