"""Cancelled calls never wedge the shared connection pool (httpcore#1093: a request cancelled
while queued for a connection could leak its slot; here queuing happens in a Trio limiter)."""

from __future__ import annotations

import trio

from edge.upstream.apis import Upstreams
from edge.upstream.errors import UpstreamFailure
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for

T, P = "tnt-demo", "prop-demo-1"


async def test_many_cancelled_hangs_leave_the_pool_usable(sim: SimHandle) -> None:
    sim.fault("inventory", "hang")
    async with clients_for(sim, BFF_UPSTREAM_CONCURRENCY="4") as (u, _):
        async with trio.open_nursery() as nursery:
            for i in range(30):  # timed out by the client's own deadline-capped scope
                nursery.start_soon(_with_deadline, u, 0.03 + (i % 7) * 0.02)
            for _ in range(30):  # cancelled from outside, mid-request or mid-queue
                nursery.start_soon(_read, u, [])
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        sim.clear_faults()
        results: list[int] = []
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(_read, u, results)
        assert len(results) == 8


async def _with_deadline(u: Upstreams, seconds: float) -> None:
    with trio.move_on_after(seconds):
        try:
            await u.inventory.availability(T, P)
        except UpstreamFailure as exc:
            assert exc.kind == "timeout"


async def _read(u: Upstreams, results: list[int]) -> None:
    results.append((await u.inventory.availability(T, P)).total_rooms)
