"""Circuit breakers: the state machine (unit, fake clock), and against the simulator: opens
after failures, fails fast without touching the upstream, half-opens, closes; readiness."""

from __future__ import annotations

import httpx
import pytest
import trio

from edge.errors import Code
from edge.metrics import Metrics
from edge.upstream.breaker import CircuitBreaker, CircuitOpen, State, circuits_probe
from edge.upstream.errors import UpstreamFailure
from schemas.upstream import UPSTREAM_NAMES
from tests.support.desktop import Desktop
from tests.support.procs import ServiceProcess, wait_until
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


def _call(breaker: CircuitBreaker, *, healthy: bool | None) -> bool:
    """One call through the breaker: False if turned away; else its verdict (None: none)."""
    try:
        with breaker.attempt() as permit:
            if healthy is True:
                permit.success()
            elif healthy is False:
                permit.failure()
    except CircuitOpen:
        return False
    return True


async def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        assert _call(breaker, healthy=False)
    assert _call(breaker, healthy=True)  # a success resets the count
    for _ in range(2):
        _call(breaker, healthy=False)
    assert _state(breaker) is State.CLOSED
    _call(breaker, healthy=False)
    assert _state(breaker) is State.OPEN and not _call(breaker, healthy=True)


async def test_half_open_lets_one_trial_through_then_closes_or_reopens() -> None:
    clock = Clock()
    metrics = Metrics()
    breaker = _breaker(clock, metrics)
    for _ in range(3):
        _call(breaker, healthy=False)
    clock.now += 4.9
    assert _state(breaker) is State.OPEN
    clock.now += 0.2
    assert _state(breaker) is State.HALF_OPEN
    with breaker.attempt() as trial:
        assert trial.trial and breaker.trial_in_flight
        assert not _call(breaker, healthy=True)  # one trial at a time
        trial.failure()
    assert _state(breaker) is State.OPEN and not breaker.trial_in_flight
    clock.now += 5.1
    assert _call(breaker, healthy=None)  # a trial that ended without a verdict frees the slot
    assert _state(breaker) is State.HALF_OPEN and not breaker.trial_in_flight
    assert _call(breaker, healthy=True)
    assert _state(breaker) is State.CLOSED
    assert sample(metrics, "bff_upstream_circuit_state", upstream="pricing") == 0
    assert (
        sample(metrics, "bff_upstream_circuit_transitions_total", upstream="pricing", to="open")
        == 2
    )


async def test_a_verdict_from_before_the_last_change_moves_nothing() -> None:
    """A slow call admitted while closed, ending (or cancelled) during the trial, neither
    decides the trial's outcome nor frees its slot for a second trial."""
    clock = Clock()
    breaker = _breaker(clock)
    with breaker.attempt() as slow:
        for _ in range(3):
            _call(breaker, healthy=False)
        clock.now += 5.1
        with breaker.attempt() as trial:
            assert trial.trial
            slow.success()  # admitted under the closed state: no say
            assert _state(breaker) is State.HALF_OPEN
            assert not _call(breaker, healthy=True)
            trial.success()
        assert _state(breaker) is State.CLOSED


@pytest.mark.parametrize(("open_count", "ready"), [(0, True), (2, True), (3, False)])
async def test_readiness_needs_80_percent_of_circuits_closed(open_count: int, ready: bool) -> None:
    clock = Clock()
    breakers = [
        CircuitBreaker(n, failure_threshold=1, open_s=5, clock=clock) for n in UPSTREAM_NAMES
    ]
    for breaker in breakers[:open_count]:
        _call(breaker, healthy=False)
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


def _circuits(bff: ServiceProcess) -> str:
    ready = httpx.get(f"{bff.url}/health/ready", timeout=5).json()
    detail: str = ready["checks"]["upstreamCircuits"].get("detail", "")
    return detail


def test_a_view_that_fans_out_cannot_keep_a_circuit_half_open(
    sim: SimHandle, start_bff: object
) -> None:
    """Issue #10 finding 1: ``/today`` makes three reservation calls at once; in half-open one
    of them is the trial and the other two fail fast, which used to cancel the trial every time,
    so only ``/today`` traffic kept the circuit half-open for ever. The trial must report."""
    bff: ServiceProcess = start_bff(SIM_URL=sim.url, BFF_BREAKER_OPEN_S="0.3")  # type: ignore[operator]
    desk = Desktop(bff.url, sim.url, "fd.demo")
    today, query = "/bff/backoffice/v1/today", {"propertyId": P}
    try:
        sim.fault("reservation", "error")

        def circuit_open() -> bool:
            answer = desk.get(today, params=query)
            assert answer.status_code == 502, answer.text
            assert answer.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
            return "circuit open" in answer.json()["error"]["message"]

        wait_until(circuit_open, 10, "/today to fail fast on the open circuit", interval=0)
        sim.clear_faults()
        wait_until(lambda: "reservation=half_open" in _circuits(bff), 5, "the circuit to half-open")
        answers: list[int] = []

        def today_ok() -> bool:
            answers.append(desk.get(today, params=query).status_code)
            return answers[-1] == 200

        wait_until(today_ok, 3, "/today to answer 200 again", interval=0.1)
        # the first call after half-open still fails fast, but its trial reports and closes it
        assert len(answers) <= 2, answers
        assert "reservation" not in _circuits(bff)
    finally:
        desk.close()
