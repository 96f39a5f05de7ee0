"""The failure catalogue's gauges that the service computes itself, against real Postgres:
lock/mutation audit completeness over its window (F-27), and the outbox's depth and lag, which
keep growing while the bus refuses publishes (F-21/F-22)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from edge.audit_completeness import audit_gauges, measure_once
from edge.bus.redis_streams import RedisStreamsPublisher
from edge.bus.relay import Relay
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from ledger.appendlog import Ledger
from ledger.database import Database
from ledger.model import NewEvent
from schemas.actor_events import LOCK_ATTEMPTED, LOCK_PROXIED, MUTATION_ATTEMPTED
from tests.support.procs import free_port
from tests.support.waiting import eventually

HEARTBEAT = "melmastoon.bff.backoffice.device.heartbeat.v1"


def row(subject: str, stream: str, attempt_id: str) -> NewEvent:
    return NewEvent(
        tenant="tnt-a", stream=stream, subject=subject, payload={"attemptId": attempt_id}
    )


async def test_audit_completeness_counts_attempts_without_an_outcome(db: Database) -> None:
    ledger = Ledger(db)
    metrics = Metrics()
    gauges = audit_gauges(metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(ledger.run)
        await ledger.append(
            [
                row(LOCK_ATTEMPTED, "lock:r-1", "a-1"),
                row(LOCK_PROXIED, "lock:r-1", "a-1"),  # finished
                row(LOCK_ATTEMPTED, "lock:r-2", "a-2"),  # the BFF died here: no outcome
                row(LOCK_ATTEMPTED, "lock:r-3", "a-3"),
                row(LOCK_PROXIED, "lock:r-3", "a-3"),
                row(LOCK_PROXIED, "lock:r-2", "other"),  # another attempt's outcome
                row(MUTATION_ATTEMPTED, "reservation:r-4", "m-1"),
            ]
        )
        nursery.cancel_scope.cancel()
    later = datetime.now(UTC) + timedelta(seconds=120)
    figures = await measure_once(db, gauges, grace_s=60, now=later)
    assert figures == {"lock": (3, 1), "mutation": (1, 1)}
    assert gauges.completeness.labels("lock")._value.get() == 1 - 1 / 3
    assert gauges.unfinished.labels("lock")._value.get() == 1
    assert gauges.completeness.labels("mutation")._value.get() == 0
    # still inside their grace: not counted yet (they may be running)
    assert await measure_once(db, gauges, grace_s=60) == {"lock": (0, 0), "mutation": (0, 0)}
    assert gauges.completeness.labels("lock")._value.get() == 1
    # past the window: no longer the gauge's business (./ops/ledger verify still lists them)
    much_later = later + timedelta(days=2)
    assert await measure_once(db, gauges, now=much_later) == {"lock": (0, 0), "mutation": (0, 0)}


async def test_outbox_depth_and_lag_grow_while_the_bus_is_down(
    db: Database, redis_prefix: str
) -> None:
    dead_bus = RedisTier("bus", f"redis://127.0.0.1:{free_port()}/0", redis_prefix, timeout=0.2)
    await dead_bus.open()
    ledger = Ledger(db)
    metrics = Metrics()
    relay = Relay(
        db,
        RedisStreamsPublisher(dead_bus),
        ledger=ledger,
        metrics=metrics,
        poll_s=0.02,
        backoff_min_s=0.02,
        backoff_max_s=0.05,
        publish_timeout_s=1,
    )
    depth, lag = metrics.relay_lag._value.get, metrics.relay_lag_seconds._value.get
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ledger.run)
            await nursery.start(relay.run)
            for n in range(3):
                await ledger.append(
                    [NewEvent(tenant="t", stream=f"device:{n}", subject=HEARTBEAT, payload={})]
                )
            await eventually(lambda: relay.failures >= 1 and depth() == 3, 10)
            first_lag = lag()
            assert first_lag > 0
            await ledger.append(
                [NewEvent(tenant="t", stream="device:x", subject=HEARTBEAT, payload={})]
            )
            await eventually(lambda: depth() == 4 and lag() > first_lag, 10)
            assert relay.position == 0  # nothing was published
            nursery.cancel_scope.cancel()
    finally:
        await dead_bus.close()
    assert depth() == 0 and lag() == 0  # no longer leading: the next leader reports them
