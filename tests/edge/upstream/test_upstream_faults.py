"""Every upstream x every fault mode, through the real client against the simulator process:
the error the caller gets, the metrics, and how long it takes (timeouts and retries per the
topology table)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from edge.errors import Code
from edge.upstream.apis import Upstreams
from edge.upstream.errors import UpstreamFailure
from edge.upstream.policy import BACKOFF_CAP_S
from schemas.upstream.lock import RevokeKeysRequest
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for, sample

T, P = "tnt-demo", "prop-demo-1"
RSV = "rsv-prop-demo-1-00001"
# lock-integration has no read the BFF makes: its case is a revoke (of no keys, so repeatable).
REVOKE = RevokeKeysRequest(operator_id="opr-fd-demo", device_id="dev-1", reason="fault drill")
SLACK_S = 0.4  # scheduling slack on a shared 2-core machine (upper bounds only)


@dataclass(frozen=True)
class Case:
    upstream: str
    operation: str
    call: Callable[[Upstreams], Awaitable[Any]]
    timeout_s: float
    attempts: int


CASES = [
    Case("iam", "jwks", lambda u: u.iam.jwks(), 0.6, 1),
    Case("tenant", "tenant", lambda u: u.tenant.tenant(T), 0.5, 2),
    Case("property", "property", lambda u: u.property.property(T, P), 0.8, 2),
    Case("reservation", "arrivals", lambda u: u.reservation.arrivals(T, P), 0.8, 1),
    Case("inventory", "availability", lambda u: u.inventory.availability(T, P), 0.6, 2),
    Case("pricing", "rates", lambda u: u.pricing.rates(T, P), 0.6, 2),
    Case("housekeeping", "tasks", lambda u: u.housekeeping.tasks(T, P), 0.7, 2),
    Case("maintenance", "workOrders", lambda u: u.maintenance.work_orders(T, P), 0.7, 2),
    Case("billing", "summary", lambda u: u.billing.summary(T, P), 0.6, 2),
    Case("lock", "revokeKey", lambda u: u.lock.revoke(T, P, RSV, REVOKE, None), 1.2, 1),
    Case("ai", "suggestions", lambda u: u.ai.suggestions(T, P), 0.8, 1),
    Case("notification", "alerts", lambda u: u.notification.alerts(T, P), 0.5, 2),
    Case("sync", "cursor", lambda u: u.sync.cursor(T, "dev-1"), 0.7, 1),
    Case("analytics", "kpis", lambda u: u.analytics.kpis(T, P), 0.6, 2),
]
IDS = [c.upstream for c in CASES]


def _attempts(sim: SimHandle, upstream: str) -> int:
    return len(sim.calls(upstream, kind="all"))


def _outcomes(metrics: Any, case: Case, outcome: str) -> float:
    return sample(
        metrics,
        "bff_upstream_requests_total",
        upstream=case.upstream,
        operation=case.operation,
        outcome=outcome,
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_error_mode(sim: SimHandle, case: Case) -> None:
    sim.fault(case.upstream, "error")
    async with clients_for(sim) as (u, metrics):
        started = trio.current_time()
        with pytest.raises(UpstreamFailure) as failure:
            await case.call(u)
        elapsed = trio.current_time() - started
    assert failure.value.code is Code.UPSTREAM_UNAVAILABLE and failure.value.kind == "unavailable"
    assert failure.value.upstream == case.upstream
    assert _attempts(sim, case.upstream) == case.attempts
    assert _outcomes(metrics, case, "error") == case.attempts
    assert (
        sample(
            metrics, "bff_upstream_retries_total", upstream=case.upstream, operation=case.operation
        )
        == case.attempts - 1
    )
    assert elapsed < (case.attempts - 1) * BACKOFF_CAP_S + SLACK_S  # fails fast, no timeout


async def test_hang_mode(sim: SimHandle) -> None:
    """All 14 at once (each on its own upstream), so the suite waits ~1.6 s rather than 15 s."""
    for case in CASES:
        sim.fault(case.upstream, "hang")
    outcomes: dict[str, tuple[float, BaseException | None]] = {}

    async def run(u: Upstreams, case: Case) -> None:
        started = trio.current_time()
        try:
            await case.call(u)
        except UpstreamFailure as exc:
            outcomes[case.upstream] = (trio.current_time() - started, exc)
        else:
            outcomes[case.upstream] = (trio.current_time() - started, None)

    async with clients_for(sim) as (u, metrics), trio.open_nursery() as nursery:
        for case in CASES:
            nursery.start_soon(run, u, case)
    for case in CASES:
        elapsed, failure = outcomes[case.upstream]
        assert isinstance(failure, UpstreamFailure), case.upstream
        timed_out = Code.UPSTREAM_TIMEOUT if failure.mutation else Code.UPSTREAM_UNAVAILABLE
        assert failure.code is timed_out and failure.kind == "timeout"
        assert _outcomes(metrics, case, "timeout") == case.attempts, case.upstream
        budget = case.attempts * case.timeout_s
        ceiling = budget + (case.attempts - 1) * BACKOFF_CAP_S + SLACK_S
        assert budget <= elapsed < ceiling, (case.upstream, elapsed)
        calls = sim.calls(case.upstream, kind="all")
        assert len(calls) == case.attempts, case.upstream
        assert {c["deadlineMs"] for c in calls} == {int(case.timeout_s * 1000)}, case.upstream


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_latency_mode_within_the_timeout(sim: SimHandle, case: Case) -> None:
    sim.fault(case.upstream, "latency", latency_ms=150)
    async with clients_for(sim) as (u, metrics):
        started = trio.current_time()
        await case.call(u)
        elapsed = trio.current_time() - started
    assert 0.15 <= elapsed < 0.15 + SLACK_S
    assert _outcomes(metrics, case, "ok") == 1 and _attempts(sim, case.upstream) == 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_drift_mode(sim: SimHandle, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    sim.fault(case.upstream, "drift")
    caplog.set_level(logging.ERROR, logger="bff.upstream")
    async with clients_for(sim) as (u, metrics):
        with pytest.raises(UpstreamFailure) as failure:
            await case.call(u)
    assert failure.value.code is Code.SCHEMA_DRIFT and failure.value.code.status == 502
    assert (
        sample(
            metrics,
            "bff_upstream_schema_drift_total",
            upstream=case.upstream,
            operation=case.operation,
        )
        == 1
    )
    [line] = [r for r in caplog.records if r.getMessage() == "upstream schema drift"]
    fields = vars(line)
    assert fields["upstream"] == case.upstream
    assert fields["field"] not in ("", "$")
    assert fields["field"] in failure.value.message
    assert _attempts(sim, case.upstream) == 1  # drift is not retried


async def test_latency_beyond_the_timeout_is_a_timeout(sim: SimHandle) -> None:
    sim.fault("lock", "latency", latency_ms=1500)
    async with clients_for(sim) as (u, _):
        started = trio.current_time()
        with pytest.raises(UpstreamFailure) as failure:
            await u.lock.revoke(T, P, RSV, REVOKE, None)
        assert 1.2 <= trio.current_time() - started < 1.2 + SLACK_S
    assert failure.value.kind == "timeout"


@pytest.mark.parametrize(("operation", "timeout_s"), [("validate", 0.2), ("attestStepUp", 0.2)])
async def test_iam_validate_calls_get_200ms(
    sim: SimHandle, operation: str, timeout_s: float
) -> None:
    sim.fault("iam", "hang")
    async with clients_for(sim) as (u, _):
        call = (
            u.iam.session("ses-x")
            if operation == "validate"
            else u.iam.attest_step_up("t", "o", "d", "lock.revoke")
        )
        started = trio.current_time()
        with pytest.raises(UpstreamFailure):
            await call
        assert timeout_s <= trio.current_time() - started < timeout_s + SLACK_S
    assert len(sim.calls("iam", kind="all")) == 1


async def test_a_mutation_timeout_is_upstream_timeout(sim: SimHandle) -> None:
    from schemas.upstream.sync import HandshakeRequest

    sim.fault("sync", "hang")
    async with clients_for(sim) as (u, _):
        with pytest.raises(UpstreamFailure) as failure:
            await u.sync.handshake(
                T,
                "dev-1",
                HandshakeRequest(operator_id="opr-fd-demo", app_version="1.0.0", schema_version=1),
            )
    assert failure.value.code is Code.UPSTREAM_TIMEOUT and failure.value.code.status == 504
