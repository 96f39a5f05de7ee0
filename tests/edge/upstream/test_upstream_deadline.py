"""The caller's deadline caps every upstream call under it: a request with 300 ms left never
waits 800 ms, a retry never runs past it, a spent deadline sends nothing."""

from __future__ import annotations

import pytest
import trio

from edge.upstream.breaker import State
from edge.upstream.errors import UpstreamFailure
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for, sample

T, P = "tnt-demo", "prop-demo-1"


async def test_300ms_left_never_waits_800ms(sim: SimHandle) -> None:
    sim.fault("reservation", "hang")
    async with clients_for(sim, BFF_BREAKER_FAILURES="1") as (u, _):
        started = trio.current_time()
        with trio.fail_after(0.3), pytest.raises(UpstreamFailure) as failure:
            await u.reservation.arrivals(T, P)
        elapsed = trio.current_time() - started
        assert elapsed < 0.3  # the client's own scope fired first: a typed error, in time
        assert failure.value.kind == "timeout" and "caller's deadline" in failure.value.message
        # cut short by the caller, not the upstream's fault: the circuit stays closed
        assert u.client.upstreams["reservation"].breaker.state is State.CLOSED
    [call] = sim.calls("reservation", kind="all")
    assert 250 <= call["deadlineMs"] <= 300  # the upstream is told how long it has


async def test_a_retry_never_runs_past_the_callers_deadline(sim: SimHandle) -> None:
    sim.fault("tenant", "hang")  # 500 ms per attempt, 1 retry
    async with clients_for(sim) as (u, _):
        started = trio.current_time()
        with trio.move_on_after(0.75), pytest.raises(UpstreamFailure):
            await u.tenant.tenant(T)
        assert trio.current_time() - started < 0.75
    first, second = sim.calls("tenant", kind="all")
    assert first["deadlineMs"] == 500
    assert second["deadlineMs"] < 250  # whatever was left after attempt 1 and the backoff


async def test_no_retry_when_the_deadline_leaves_no_room(sim: SimHandle) -> None:
    sim.fault("tenant", "hang")
    async with clients_for(sim) as (u, _):
        with trio.move_on_after(0.52), pytest.raises(UpstreamFailure):
            await u.tenant.tenant(T)
    assert len(sim.calls("tenant", kind="all")) == 1


async def test_a_spent_deadline_sends_nothing(sim: SimHandle) -> None:
    async with clients_for(sim) as (u, metrics):
        with trio.move_on_after(0.01), pytest.raises(UpstreamFailure) as failure:
            await u.pricing.rates(T, P)
        assert failure.value.kind == "timeout"
        assert (
            sample(
                metrics,
                "bff_upstream_requests_total",
                upstream="pricing",
                operation="rates",
                outcome="deadline",
            )
            == 1
        )
    assert sim.calls("pricing", kind="all") == []


async def test_a_generous_deadline_keeps_the_policy_timeout(sim: SimHandle) -> None:
    sim.fault("ai", "hang")
    async with clients_for(sim) as (u, _):
        started = trio.current_time()
        with trio.fail_after(10), pytest.raises(UpstreamFailure):
            await u.ai.suggestions(T, P)
        assert 0.8 <= trio.current_time() - started < 1.2
    [call] = sim.calls("ai", kind="all")
    assert call["deadlineMs"] == 800
