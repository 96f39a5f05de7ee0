"""The upstream and application drills (ops/drills/rows_upstream.py, rows_app.py) run by the
real runner against a stack-like set of processes: one BFF process, the simulator, this test's
Postgres database and Redis prefix. Three drills pass, and one run where the fault cannot be
seen (the drill evicts another prefix's cache, so the BFF keeps serving its cached dashboard)
FAILS with the evidence: the drills check what they claim, they do not just run."""

from __future__ import annotations

import pytest
import redis

from ops.drills.catalogue import drills
from ops.drills.framework import Drill, Outcome, Stack, run_drill
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle

FAST = {"BFF_BREAKER_OPEN_S": "0.5"}  # a circuit a drill's outage opened closes soon after


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, BFF_LOG_LEVEL="WARNING", **FAST)


def stack_of(bff: ServiceProcess, sim: SimHandle, database_url: str, prefix: str) -> Stack:
    """What ``./ops/stack env`` would say about these processes."""
    return Stack(
        bff_url=bff.url,
        sim_url=sim.url,
        instance_urls=(bff.url,),
        admin_urls=(),
        faults_url=None,
        env={
            "BFF_DATABASE_URL": database_url,
            "BFF_REDIS_CACHE_URL": REDIS_URL,
            "BFF_REDIS_SESSION_URL": REDIS_URL,
            "BFF_REDIS_PREFIX": prefix,
        },
    )


def drill_for(row: str) -> Drill:
    return next(d for d in drills() if d.row == row)


def shown(outcome: Outcome) -> str:
    return "\n".join([f"{outcome.row} passed={outcome.passed}", *outcome.evidence])


@pytest.mark.parametrize("row", ["F-5", "F-27", "F-28", "F-32"])
def test_the_drill_passes_on_a_healthy_stack(
    row: str, bff: ServiceProcess, sim: SimHandle, database_url: str, redis_prefix: str
) -> None:
    outcome = run_drill(drill_for(row), stack_of(bff, sim, database_url, redis_prefix))
    assert outcome.passed, shown(outcome)
    assert not [line for line in outcome.evidence if line.startswith("NOT:")], shown(outcome)
    assert sim.get("/_sim/faults") == []  # the runner restored the simulator


def test_a_fault_the_service_never_sees_is_a_fail_with_the_evidence(
    bff: ServiceProcess, sim: SimHandle, database_url: str, redis_prefix: str
) -> None:
    """The drill evicts the cached dashboards under the wrong prefix: the BFF keeps answering
    from its cache (full dashboards live 30 s), inventory's outage never shows, and F-5 must
    say so rather than pass."""
    blind = stack_of(bff, sim, database_url, redis_prefix + "-elsewhere")
    outcome = run_drill(drill_for("F-5"), blind)
    assert not outcome.passed, shown(outcome)
    refuted = [line for line in outcome.evidence if line.startswith("NOT:")]
    assert len(refuted) == 1 and "inventory widget(s) unavailable" in refuted[0], shown(outcome)
    assert sim.get("/_sim/faults") == []  # restored although it failed
    client = redis.Redis.from_url(REDIS_URL)
    try:  # the real prefix's cached dashboard was what answered
        assert list(client.scan_iter(f"{redis_prefix}:tnt-demo:property:*:cache:dashboard:*"))
    finally:
        client.close()
