"""Circuit breakers: the state machine (unit, fake clock), and against the simulator: opens
after failures, fails fast without touching the upstream, half-opens, closes; readiness."""

from __future__ import annotations

import httpx
import pytest
import trio

from edge.errors import Code
from edge.metrics import Metrics
from edge.upstream.breaker import CircuitBreaker, State, circuits_probe
from edge.upstream.errors import UpstreamFailure
from schemas.upstream import UPSTREAM_NAMES
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for, sample

T, P = "tnt-demo", "prop-demo-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _state(breaker: CircuitBreaker) -> State:
    """Read through a call, so the type checker does not pin the property between steps."""
    return breaker.state


def _breaker(clock: Clock, metrics: Metrics | None = None) -> CircuitBreaker:
    return CircuitBreaker("pricing", failure_threshold=3, open_s=5.0, metrics=metrics, clock=clock)


def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.failure()
    assert breaker.try_acquire()
    breaker.success()  # a success resets the count
    for _ in range(2):
        breaker.try_acquire()
        breaker.failure()
    assert _state(breaker) is State.CLOSED
    breaker.try_acquire()
    breaker.failure()
    assert _state(breaker) is State.OPEN and not breaker.try_acquire()


def test_half_open_lets_one_probe_through_then_closes_or_reopens() -> None:
    clock = Clock()
    metrics = Metrics()
    breaker = _breaker(clock, metrics)
    for _ in range(3):
        breaker.try_acquire()
        breaker.failure()
    clock.now += 4.9
    assert _state(breaker) is State.OPEN
    clock.now += 0.2
    assert _state(breaker) is State.HALF_OPEN
    assert breaker.try_acquire() and not breaker.try_acquire()  # one probe at a time
    breaker.failure()
    assert _state(breaker) is State.OPEN
    clock.now += 5.1
    assert breaker.try_acquire()
    breaker.release()  # a probe that ended without a verdict frees the slot
    assert breaker.try_acquire()
    breaker.success()
    assert _state(breaker) is State.CLOSED
    assert sample(metrics, "bff_upstream_circuit_state", upstream="pricing") == 0
    assert (
        sample(metrics, "bff_upstream_circuit_transitions_total", upstream="pricing", to="open")
        == 2
    )


@pytest.mark.parametrize(("open_count", "ready"), [(0, True), (2, True), (3, False)])
async def test_readiness_needs_80_percent_of_circuits_closed(open_count: int, ready: bool) -> None:
    clock = Clock()
    breakers = [
        CircuitBreaker(n, failure_threshold=1, open_s=5, clock=clock) for n in UPSTREAM_NAMES
    ]
    for breaker in breakers[:open_count]:
        breaker.try_acquire()
        breaker.failure()
    check = await circuits_probe(breakers)()
    assert check.ok is ready
    assert (f"{14 - open_count}/14 closed" in check.detail) == (open_count > 0)


async def test_breaker_against_the_simulator(sim: SimHandle) -> None:
    sim.fault("analytics", "error")
    async with clients_for(sim, BFF_BREAKER_FAILURES="3", BFF_BREAKER_OPEN_S="0.3") as (u, metrics):
        for _ in range(2):  # 2 calls x 2 attempts = 4 failures ≥ 3
            with pytest.raises(UpstreamFailure):
                await u.analytics.kpis(T, P)
        reached = len(sim.calls("analytics", kind="all"))
        assert reached == 3  # the 4th attempt already found the circuit open
        started = trio.current_time()
        with pytest.raises(UpstreamFailure) as fast:
            await u.analytics.kpis(T, P)
        assert fast.value.kind == "circuit_open" and fast.value.code is Code.UPSTREAM_UNAVAILABLE
        assert trio.current_time() - started < 0.05
        assert len(sim.calls("analytics", kind="all")) == reached  # upstream untouched
        assert sample(metrics, "bff_upstream_circuit_state", upstream="analytics") == 2
        probe = circuits_probe(b.breaker for b in u.client.upstreams.values())
        assert (await probe()).detail == "13/14 closed; analytics=open"
        sim.clear_faults()
        with trio.fail_after(3):  # poll until the half-open probe closes it
            while True:
                try:
                    await u.analytics.kpis(T, P)
                    break
                except UpstreamFailure as exc:
                    assert exc.kind == "circuit_open"
                    await trio.sleep(0.02)
        assert sample(metrics, "bff_upstream_circuit_state", upstream="analytics") == 0
        assert (
            sample(
                metrics,
                "bff_upstream_circuit_transitions_total",
                upstream="analytics",
                to="half_open",
            )
            == 1
        )
        assert (await probe()).ok


async def test_drift_and_rejections_do_not_open_the_circuit(sim: SimHandle) -> None:
    sim.fault("pricing", "drift")
    async with clients_for(sim, BFF_BREAKER_FAILURES="1") as (u, _):
        for _ in range(3):
            with pytest.raises(UpstreamFailure):
                await u.pricing.rates(T, P)
        assert _state(u.client.upstreams["pricing"].breaker) is State.CLOSED


def test_the_service_reports_circuits_in_readiness_and_metrics(
    sim: SimHandle, start_bff: object
) -> None:
    bff: ServiceProcess = start_bff(SIM_URL=sim.url)  # type: ignore[operator]
    ready = httpx.get(f"{bff.url}/health/ready", timeout=5).json()
    assert ready["checks"]["upstreamCircuits"] == {"ok": True}
    text = httpx.get(f"{bff.url}/metrics", timeout=5).text
    assert 'bff_upstream_circuit_state{upstream="reservation"} 0.0' in text
