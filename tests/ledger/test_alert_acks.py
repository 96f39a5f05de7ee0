"""Alert acknowledgements against a real Postgres: the first ack stands (also when two race),
claims never hand the same ack to two forwarders, a lease runs out, release and mark_forwarded,
the alert list's overlay, and an unreachable Postgres surfacing as DatabaseUnavailable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import trio

from ledger.alert_acks import AlertAckStore
from ledger.database import Database, DatabaseUnavailable
from schemas.inbox import AlertAck
from tests.support.waiting import eventually

T = "tnt-a"
P = "prop-1"


def ack(
    alert_id: str = "alr-1", *, tenant: str = T, prop: str = P, operator: str = "op-1"
) -> AlertAck:
    return AlertAck(
        tenant=tenant,
        property_id=prop,
        alert_id=alert_id,
        operator_id=operator,
        device_id=f"dev-{operator}",
        at=datetime.now(UTC).replace(microsecond=0),
    )


@pytest.fixture
def store(db: Database) -> AlertAckStore:
    """A store whose fresh acks are due at once (no inline attempt to wait for)."""
    return AlertAckStore(db, first_attempt_delay_s=0)


async def test_the_first_ack_stands(store: AlertAckStore) -> None:
    first = await store.record(ack(operator="op-1"))
    later = ack(operator="op-2")
    second = await store.record(msgspec.structs.replace(later, at=later.at + timedelta(minutes=5)))
    assert first.created is True and first.forwarded is False
    assert second.created is False and second.forwarded is False
    assert second.ack == first.ack
    assert second.ack.operator_id == "op-1" and second.ack.device_id == "dev-op-1"
    other_tenant = await store.record(ack(tenant="tnt-b", operator="op-9"))
    assert other_tenant.created is True  # (tenant, alertId) is the key


async def test_racing_first_acks_record_one(store: AlertAckStore) -> None:
    results: list[bool] = []

    async def one(operator: str) -> None:
        recorded = await store.record(ack("alr-race", operator=operator))
        results.append(recorded.created)
        assert recorded.ack.alert_id == "alr-race"

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, f"op-{i}")
    assert sorted(results) == [False] * 7 + [True]
    operators = {(await store.record(ack("alr-race", operator="x"))).ack.operator_id}
    assert len(operators) == 1 and operators != {"x"}


async def test_concurrent_claims_never_share_an_ack(store: AlertAckStore) -> None:
    for i in range(40):
        await store.record(ack(f"alr-{i:02d}"))
    claimed: list[list[str]] = []

    async def claimer() -> None:
        got = await store.claim_unforwarded(7, lease_s=60)
        claimed.append([a.alert_id for a in got])

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(claimer)
    flat = [alert for batch in claimed for alert in batch]
    assert len(flat) == len(set(flat)) == 40, claimed
    assert await store.claim_unforwarded(100, lease_s=60) == []  # all leased
    assert await store.pending_count() == 40


async def test_a_lease_runs_out(store: AlertAckStore) -> None:
    await store.record(ack("alr-lease"))
    first = await store.claim_unforwarded(10, lease_s=0.3)
    assert [a.alert_id for a in first] == ["alr-lease"]
    assert await store.claim_unforwarded(10, lease_s=0.3) == []

    async def due_again() -> bool:
        return bool(await store.claim_unforwarded(10, lease_s=60))

    await eventually(due_again, timeout=5)


async def test_release_and_forwarded(store: AlertAckStore, db: Database) -> None:
    await store.record(ack("alr-a"))
    await store.record(ack("alr-b"))
    claimed = await store.claim_unforwarded(10, lease_s=60)
    assert sorted(a.alert_id for a in claimed) == ["alr-a", "alr-b"]
    await store.release(T, "alr-a", 0, error="notification answered 503")
    assert await store.mark_forwarded(T, "alr-b") is True
    assert await store.mark_forwarded(T, "alr-b") is False  # once
    again = await store.claim_unforwarded(10, lease_s=60)
    assert [a.alert_id for a in again] == ["alr-a"]
    row = await db.fetch("SELECT alert_id, attempts, last_error FROM alert_acks ORDER BY 1")
    assert [(r["alert_id"], r["attempts"]) for r in row] == [("alr-a", 2), ("alr-b", 1)]
    assert "503" in row[0]["last_error"]
    recorded = await store.record(ack("alr-b", operator="op-2"))
    assert recorded.forwarded is True and recorded.created is False
    await store.mark_forwarded(T, "alr-a", "rejected:404 NOT_FOUND")
    await store.release(T, "alr-a", 0)  # a stale holder's release changes nothing now
    refused = await store.record(ack("alr-a"))
    assert refused.forwarded is False  # done with, but notification-service does not have it
    assert await store.claim_unforwarded(10, lease_s=60) == []
    assert await store.pending_count() == 0


async def test_a_fresh_ack_waits_for_its_inline_attempt(db: Database) -> None:
    store = AlertAckStore(db)  # the default delay
    await store.record(ack("alr-fresh"))
    assert await store.claim_unforwarded(10, lease_s=60) == []
    assert await store.pending_count() == 1


async def test_overlay_is_per_tenant_and_property(store: AlertAckStore) -> None:
    await store.record(ack("alr-1"))
    await store.record(ack("alr-2"))
    await store.record(ack("alr-3", prop="prop-2"))
    await store.record(ack("alr-1", tenant="tnt-b"))
    assert set(await store.acknowledged(T, P)) == {"alr-1", "alr-2"}
    assert set(await store.acknowledged(T, P, ["alr-2", "alr-3", "alr-9"])) == {"alr-2"}
    assert await store.acknowledged(T, P, []) == {}
    got = (await store.acknowledged("tnt-b", P))["alr-1"]
    assert got.tenant == "tnt-b" and got.operator_id == "op-1"


async def test_unreachable_postgres_is_database_unavailable(aio_loop: object) -> None:
    dead = Database("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.5)
    await dead.open()
    store = AlertAckStore(dead)
    try:
        with pytest.raises(DatabaseUnavailable):
            await store.record(ack())
        with pytest.raises(DatabaseUnavailable):
            await store.claim_unforwarded(10, lease_s=60)
        with pytest.raises(DatabaseUnavailable):
            await store.acknowledged(T, P)
    finally:
        await dead.close()
