"""Property test of the circuit breaker under concurrency and cancellation (issue #10, 1).

The real :class:`UpstreamClient` and :class:`CircuitBreaker` call a scripted upstream (an httpx
mock transport whose answers take virtual time) on Trio's virtual clock (``MockClock``,
autojump). Hypothesis generates rounds of concurrent calls, each of which succeeds, fails (5xx),
hangs past its policy timeout, is cancelled by its caller at some moment, or runs under a caller
deadline; a round may behave like ``/today`` (the first failure cancels the others). Whatever
happens:

* at most one trial is in flight: at most one request that reached the upstream while the
  circuit was half-open is ever running at once;
* a trial always reports: once a request has reached the upstream as the trial of a half-open
  period, the circuit does not stay half-open with nothing in flight;
* once the upstream has recovered, one round of calls after ``open_s`` — even a ``/today``-like
  round whose other calls fail fast on the half-open circuit and cancel the trial's caller —
  closes the circuit, and the next call succeeds.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import msgspec
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge.metrics import Metrics
from edge.upstream.breaker import CircuitBreaker, State
from edge.upstream.client import Upstream, UpstreamClient
from edge.upstream.errors import UpstreamFailure
from edge.upstream.idtoken import NoIdTokens
from edge.upstream.policy import Policy
from schemas.upstream import UpstreamName
from tests.support.upstream import sample

OPEN_S = 0.5  # shorter than the policy timeout: calls of one state outlive it
THRESHOLD = 3
POLICY = Policy(read_timeout_s=0.8, mutation_timeout_s=0.8, read_retries=1, mutation_retries=0)
UPSTREAM: UpstreamName = "reservation"


class Answer(msgspec.Struct):
    ok: bool


@dataclass(frozen=True)
class Call:
    delay: float  # seconds after the round's start that the call is made
    fails: bool  # the upstream answers 503
    latency: float  # seconds until it answers (past 0.8 s: the attempt times out)
    cancel_after: float | None  # the caller cancels the call after this long
    deadline: float | None  # the caller's own deadline


@dataclass(frozen=True)
class Round:
    gap: float  # virtual seconds before the round starts
    fan_out: bool  # like /today's gather: the first failure cancels the other calls
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Scenario:
    rounds: tuple[Round, ...]
    recovery_cancels: tuple[float | None, ...]  # the recovery round's callers' cancel times


seconds = st.floats(0.0, 1.5, allow_nan=False)
calls = st.builds(
    Call,
    delay=st.just(0.0) | seconds,
    fails=st.booleans(),
    latency=st.sampled_from([0.0, 0.05, 0.3, 0.79, 0.81, 1.2]) | seconds,
    cancel_after=st.none() | seconds,
    deadline=st.none() | seconds,
)
rounds = st.builds(
    Round,
    gap=st.sampled_from([0.0, OPEN_S / 2, OPEN_S, 2 * OPEN_S])
    | st.floats(0.0, 2.5, allow_nan=False),
    fan_out=st.booleans(),
    calls=st.lists(calls, min_size=1, max_size=5).map(tuple),
)
scenarios = st.builds(
    Scenario,
    rounds=st.lists(rounds, min_size=1, max_size=8).map(tuple),
    recovery_cancels=st.lists(st.none() | seconds, min_size=3, max_size=3).map(tuple),
)


@dataclass
class World:
    """The scripted upstream and what it saw."""

    breaker: CircuitBreaker
    metrics: Metrics
    script: dict[str, Call] = field(default_factory=dict)
    trials_in_flight: int = 0
    violations: list[str] = field(default_factory=list)
    trial_of_period: float = -1.0  # the half-open period (its ordinal) a trial last reached

    def half_open_periods(self) -> float:
        return sample(
            self.metrics,
            "bff_upstream_circuit_transitions_total",
            upstream=UPSTREAM,
            to="half_open",
        )

    async def handle(self, request: httpx.Request) -> httpx.Response:
        call = self.script[request.headers["x-call"]]
        trial = self.breaker.state is State.HALF_OPEN  # only a trial gets through half-open
        if trial:
            self.trials_in_flight += 1
            self.trial_of_period = self.half_open_periods()
            if self.trials_in_flight > 1:
                self.violations.append(f"{self.trials_in_flight} trials in flight")
        try:
            await trio.sleep(call.latency)
            return httpx.Response(503 if call.fails else 200, json={"ok": not call.fails})
        finally:
            if trial:
                self.trials_in_flight -= 1

    def check_quiet(self, when: str) -> None:
        """Nothing in flight: a half-open circuit must not have had its trial already."""
        if self.breaker.state is State.HALF_OPEN:
            if self.breaker.trial_in_flight:
                self.violations.append(f"{when}: trial slot held with nothing in flight")
            if self.trial_of_period == self.half_open_periods():
                self.violations.append(f"{when}: half-open after its trial reached the upstream")


@asynccontextmanager
async def client_for(world: World) -> AsyncIterator[UpstreamClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(world.handle))
    target = Upstream(
        name=UPSTREAM,
        base_url="http://reservation.test",
        policy=POLICY,
        breaker=world.breaker,
        limiter=trio.CapacityLimiter(64),
    )
    client = UpstreamClient(http, {UPSTREAM: target}, NoIdTokens(), world.metrics)
    client._rng = random.Random(0)  # backoff jitter: reproducible examples
    try:
        yield client
    finally:
        await http.aclose()


async def run_round(client: UpstreamClient, world: World, number: int, plan: Round) -> None:
    async def cancel_later(scope: trio.CancelScope, after: float) -> None:
        await trio.sleep(after)
        scope.cancel()

    async def one(key: str, call: Call, group: trio.CancelScope, timers: trio.Nursery) -> None:
        world.script[key] = call
        await trio.sleep(call.delay)
        with trio.CancelScope() as own:
            if call.cancel_after is not None:
                timers.start_soon(cancel_later, own, call.cancel_after)
            with trio.move_on_after(call.deadline if call.deadline is not None else 3600):
                try:
                    await client.call(
                        UPSTREAM, "GET", "/r", Answer, op="read", headers={"x-call": key}
                    )
                except UpstreamFailure:
                    if plan.fan_out:
                        group.cancel()

    await trio.sleep(plan.gap)
    async with trio.open_nursery() as timers:
        async with trio.open_nursery() as group:
            for i, call in enumerate(plan.calls):
                group.start_soon(one, f"{number}.{i}", call, group.cancel_scope, timers)
        timers.cancel_scope.cancel()


async def scenario_holds(plan: Scenario) -> World:
    metrics = Metrics()
    world = World(
        CircuitBreaker(UPSTREAM, failure_threshold=THRESHOLD, open_s=OPEN_S, metrics=metrics),
        metrics,
    )
    async with client_for(world) as client:
        for number, each in enumerate(plan.rounds):
            await run_round(client, world, number, each)
            world.check_quiet(f"after round {number}")
        # The upstream is back: one /today-like round after open_s closes the circuit.
        healthy = Call(0.0, fails=False, latency=0.01, cancel_after=None, deadline=None)
        recovery = Round(
            gap=OPEN_S,
            fan_out=True,
            calls=tuple(
                Call(0.0, False, 0.01, cancel_after=c, deadline=None) for c in plan.recovery_cancels
            ),
        )
        await run_round(client, world, len(plan.rounds), recovery)
        world.check_quiet("after recovery")
        if world.breaker.state is not State.CLOSED:
            world.violations.append(f"still {world.breaker.state.name} after recovery")
        world.script["last"] = healthy
        answer = await client.call(
            UPSTREAM, "GET", "/r", Answer, op="read", headers={"x-call": "last"}
        )
        assert answer.ok
    return world


def run(plan: Scenario) -> None:
    breaker_log = logging.getLogger("bff.upstream.breaker")
    breaker_log.disabled = True  # a line per transition, thousands per run: not worth capturing
    try:
        world = trio.run(scenario_holds, plan, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        breaker_log.disabled = False
    assert not world.violations, world.violations


FAILS = Call(0.0, True, 0.0, None, None)
TRIP = Round(0.0, False, (FAILS, FAILS))  # 2 calls x 2 attempts: 4 failures
TODAY_HALF_OPEN = Round(OPEN_S, True, tuple(Call(0.0, False, 0.05, None, None) for _ in range(3)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=scenarios)
@example(plan=Scenario((TRIP, TODAY_HALF_OPEN), (None, None, None)))  # the reported bug
@example(  # a closed-period call cancelled during the trial must not free a second trial
    plan=Scenario(
        (
            Round(
                0.0,
                False,
                (
                    Call(0.0, False, 0.79, cancel_after=0.7, deadline=None),  # admitted closed
                    FAILS,
                    FAILS,
                    Call(0.6, False, 0.3, None, None),  # the trial, 0.6 → 0.9
                    Call(0.75, False, 0.1, None, None),  # must find the trial in flight
                ),
            ),
        ),
        (None, None, None),
    )
)
@example(  # a trial whose caller's deadline is shorter than the upstream's answer
    plan=Scenario(
        (TRIP, Round(OPEN_S, False, (Call(0.0, False, 0.5, None, deadline=0.2),))),
        (None, 0.0, None),
    )
)
def test_breaker_state_machine_under_cancellation(plan: Scenario) -> None:
    run(plan)
