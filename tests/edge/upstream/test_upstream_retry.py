"""Retries only where safe: reads of retrying upstreams, mutations only with an
Idempotency-Key, never on lock or sync, never on a 4xx; a retried mutation is applied once."""

from __future__ import annotations

import pytest
import trio

from edge.errors import Code
from edge.upstream.errors import UpstreamFailure
from schemas.upstream.lock import IssueKeyRequest
from schemas.upstream.reservation import CheckInRequest
from schemas.upstream.sync import HandshakeRequest
from tests.support.procs import wait_until
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for

T, P = "tnt-demo", "prop-demo-1"


def _booked(sim: SimHandle) -> str:
    items = sim.get(f"/reservation/v1/tenants/{T}/properties/{P}/arrivals")["items"]
    return str(next(r["id"] for r in items if r["status"] == "booked"))


def _in_house(sim: SimHandle) -> str:
    return str(sim.get(f"/reservation/v1/tenants/{T}/properties/{P}/in-house")["items"][0]["id"])


async def test_lock_mutations_are_never_retried(sim: SimHandle) -> None:
    rid = _in_house(sim)
    sim.fault("lock", "error")
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure) as failure:
            await u.lock.issue(
                T,
                P,
                rid,
                IssueKeyRequest(operator_id="o", device_id="d"),
                idempotency_key="lock-key-1",
            )
    assert failure.value.code is Code.UPSTREAM_UNAVAILABLE
    assert [c["idempotencyKey"] for c in sim.calls("lock")] == ["lock-key-1"]


async def test_sync_handshake_is_never_retried(sim: SimHandle) -> None:
    sim.fault("sync", "error")
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure):
            await u.sync.handshake(
                T,
                "dev-1",
                HandshakeRequest(operator_id="o", app_version="1.0.0", schema_version=1),
                idempotency_key="s-1",
            )
    assert len(sim.calls("sync")) == 1


async def test_reservation_reads_are_not_retried(sim: SimHandle) -> None:
    sim.fault("reservation", "error")
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure):
            await u.reservation.in_house(T, P)
    assert len(sim.calls("reservation", kind="all")) == 1


@pytest.mark.parametrize(("key", "attempts"), [("idem-1", 2), (None, 1)])
async def test_reservation_mutations_retry_once_only_with_a_key(
    sim: SimHandle, key: str | None, attempts: int
) -> None:
    rid = _booked(sim)
    sim.fault("reservation", "error")
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure) as failure:
            await u.reservation.check_in(T, P, rid, CheckInRequest(operator_id="o"), key)
    assert failure.value.code is Code.UPSTREAM_UNAVAILABLE
    calls = sim.calls("reservation")
    assert [c["idempotencyKey"] for c in calls] == [key] * attempts


async def test_a_retried_mutation_reaches_the_domain_once(sim: SimHandle) -> None:
    """The first attempt is applied after the client gave up on it; the retry (same key) is
    answered from the upstream's idempotency store, so the check-in happens once."""
    rid = _booked(sim)
    sim.fault("reservation", "latency", latency_ms=1600)  # > the 1500 ms mutation timeout
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure) as failure:
            await u.reservation.check_in(T, P, rid, CheckInRequest(operator_id="o"), "once-1")
    assert failure.value.code is Code.UPSTREAM_TIMEOUT
    wait_until(lambda: all(c["status"] for c in sim.calls("reservation")), 5, "both answers")
    calls = sim.calls("reservation")
    assert [(c["status"], c["replayed"]) for c in calls] == [(200, False), (200, True)]
    assert len(sim.events("melmastoon.reservation.checked_in")) == 1


async def test_tenant_reads_retry_once_then_succeed_when_the_fault_clears(
    sim: SimHandle,
) -> None:
    sim.fault("tenant", "hang")
    async with clients_for(sim) as (u, _), trio.open_nursery() as nursery:
        result: list[str] = []

        async def read() -> None:
            result.append((await u.tenant.tenant(T)).id)

        nursery.start_soon(read)
        # once the first attempt is in, clear the fault: the retry then answers
        await trio.to_thread.run_sync(
            wait_until, lambda: bool(sim.calls("tenant", kind="all")), 5, "the first attempt"
        )
        sim.clear_faults()
    assert result == ["tnt-demo"]
    assert [c["fault"] for c in sim.calls("tenant", kind="all")] == ["hang", None]
