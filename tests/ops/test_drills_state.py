"""The state drills (ops/drills/rows_state.py) against real processes: a BFF whose Redis tiers and
Postgres are reached through the dependency fault proxy, the simulator, the real servers.

Each drill must PASS here, and must FAIL when its fault cannot take effect: a drill that breaks
a proxy the BFF does not use sees nothing change, and says so with its evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ops.drills import rows_state
from ops.drills.framework import REGISTRY, Outcome, Stack, run_drill
from tests.support.faultproxy import FaultProxyProcess
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess, free_port
from tests.support.sim import SimHandle

REDIS = ("127.0.0.1", urlsplit(REDIS_URL).port or 6379)
POSTGRES = ("127.0.0.1", 5432)


def _proxy(log_dir: Path, name: str = "faultproxy") -> FaultProxyProcess:
    nothing = ("127.0.0.1", free_port())  # no bus behind it: these drills do not use one
    routes = {"redis-cache": REDIS, "redis-session": REDIS, "postgres": POSTGRES}
    return FaultProxyProcess({**routes, "pubsub": nothing}, log_dir, name)


@pytest.fixture
def proxy(log_dir: Path) -> Iterator[FaultProxyProcess]:
    process = _proxy(log_dir)
    try:
        yield process
    finally:
        process.stop()


def _through(url: str, address: str) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=f"postgres@{address}"))


@pytest.fixture
def stack(
    start_bff: ServiceFactory, sim: SimHandle, proxy: FaultProxyProcess, database_url: str
) -> Stack:
    """A one-process stack wired the way ``./ops/stack up --instances N`` wires it."""
    admin = free_port()
    database = _through(database_url, proxy.address("postgres"))
    bff: ServiceProcess = start_bff(
        SIM_URL=sim.url,
        BFF_DATABASE_URL=database,
        BFF_REDIS_CACHE_URL=f"redis://{proxy.address('redis-cache')}/0",
        BFF_REDIS_SESSION_URL=f"redis://{proxy.address('redis-session')}/0",
        BFF_ADMIN_PORT=str(admin),
        BFF_DEPENDENCY_TIMEOUT_S="0.5",
    )
    return Stack(
        bff_url=bff.url,
        sim_url=sim.url,
        instance_urls=(bff.url,),
        admin_urls=(f"http://127.0.0.1:{admin}",),
        faults_url=proxy.control_url,
        env={"BFF_DATABASE_URL": database},
    )


def _run(row: str, stack: Stack) -> Outcome:
    outcome = run_drill(REGISTRY[row], stack)
    print(f"{row}: {'PASS' if outcome.passed else 'FAIL'}", *outcome.evidence, sep="\n  ")
    return outcome


@pytest.mark.slow
@pytest.mark.parametrize("row", ["F-17", "F-18", "F-20", "ACTORS"])
def test_the_drill_passes_and_leaves_every_dependency_passing(
    stack: Stack, proxy: FaultProxyProcess, row: str
) -> None:
    outcome = _run(row, stack)
    assert outcome.passed, outcome.evidence
    assert all(not line.startswith("NOT") for line in outcome.evidence)
    assert {p["mode"] for p in proxy.proxies().values()} == {"pass"}


def test_a_fault_that_cannot_take_effect_fails_the_drill_with_its_evidence(
    stack: Stack, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drill breaks the session tier on a proxy the BFF does not go through: readiness
    never turns, the mutation still succeeds, and the drill reports FAIL saying which."""
    monkeypatch.setattr(rows_state, "DETECT_S", 3.0)
    decoy = _proxy(log_dir, "decoy")
    try:
        elsewhere = dataclasses.replace(stack, faults_url=decoy.control_url)
        outcome = _run("F-18", elsewhere)
        assert decoy.output().count("redis-session: pass -> down") == 1  # it did break that
    finally:
        decoy.stop()
    assert not outcome.passed
    assert outcome.evidence[-1] == (
        "NOT: every process not ready (503) with redisSession down within 3s"
    )
