"""The acknowledgement forwarder in process, against a real Postgres and a scripted
notification-service: one offer per ack, refusals settled for good, failures backed off without
offering the rest of the batch, and a Postgres outage that never ends the forwarder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import trio

from edge.inbox.forwarder import AckForwarder, idempotency_key, run_ack_forwarder
from edge.inbox.instruments import inbox_instruments
from edge.metrics import Metrics
from edge.upstream.apis import NotificationApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from ledger.alert_acks import AlertAckStore
from ledger.database import Database
from schemas.inbox import AlertAck
from schemas.upstream import notification
from tests.support.waiting import eventually

T, P = "tnt-a", "prop-1"
Answer = Callable[[str], None]  # raises to fail the offer of that alert


def ok(alert_id: str) -> None:
    return None


class ScriptedNotification(NotificationApi):
    """notification-service as a script: ``answer(alertId)`` decides each offer."""

    def __init__(self, answer: Answer = ok) -> None:
        self.answer = answer
        self.offers: list[tuple[str, str | None]] = []

    async def acknowledge(
        self,
        tenant_id: str,
        property_id: str,
        alert_id: str,
        request: notification.AcknowledgeRequest,
        idempotency_key: str | None,
    ) -> notification.Alert:
        self.offers.append((alert_id, idempotency_key))
        self.answer(alert_id)
        return notification.Alert(
            id=alert_id,
            tenant_id=tenant_id,
            property_id=property_id,
            severity="info",
            category="system",
            title="t",
            message="m",
            status="acknowledged",
            source="test",
            raised_at=datetime.now(UTC),
            acknowledged_by=request.operator_id,
        )


def ack(alert_id: str) -> AlertAck:
    return AlertAck(
        tenant=T,
        property_id=P,
        alert_id=alert_id,
        operator_id="op-1",
        device_id="dev-1",
        at=datetime.now(UTC),
    )


@pytest.fixture
def store(db: Database) -> AlertAckStore:
    return AlertAckStore(db, first_attempt_delay_s=0)


def forwarder(store: AlertAckStore, api: NotificationApi, metrics: Metrics) -> AckForwarder:
    return AckForwarder(store, api, inbox_instruments(metrics), interval_s=0.05)


async def test_each_ack_is_offered_once_and_refusals_are_settled(store: AlertAckStore) -> None:
    def answer(alert_id: str) -> None:
        if alert_id == "alr-gone":
            raise UpstreamRejected("notification", "acknowledge", 404, "NOT_FOUND", "no alert")

    api = ScriptedNotification(answer)
    for alert_id in ("alr-1", "alr-2", "alr-gone"):
        await store.record(ack(alert_id))
    fwd = forwarder(store, api, Metrics())
    await fwd.round()
    await fwd.round()
    assert sorted(a for a, _ in api.offers) == ["alr-1", "alr-2", "alr-gone"]
    assert dict(api.offers)["alr-1"] == idempotency_key(ack("alr-1"))
    assert await store.pending_count() == 0
    assert (await store.record(ack("alr-gone"))).forwarded is False  # refused, not delivered
    assert (await store.record(ack("alr-1"))).forwarded is True


async def test_a_failure_backs_off_the_whole_batch(store: AlertAckStore) -> None:
    down = True

    def answer(alert_id: str) -> None:
        if down:
            raise UpstreamFailure(
                "notification", "acknowledge", "unavailable", "503", mutation=True
            )

    api = ScriptedNotification(answer)
    for n in range(3):
        await store.record(ack(f"alr-{n}"))
    fwd = forwarder(store, api, Metrics())
    await fwd.round()
    assert len(api.offers) == 1  # the rest of the batch is not offered to a failing upstream
    await fwd.round()
    assert len(api.offers) == 1  # all released with a backoff: nothing due yet

    async def offered_again() -> bool:
        await fwd.round()
        return len(api.offers) > 1

    await eventually(offered_again, timeout=5)
    assert fwd._failures == 2  # idle rounds between did not reset the backoff
    down = False

    async def all_delivered() -> bool:
        await fwd.round()
        return await store.pending_count() == 0

    await eventually(all_delivered, timeout=5)
    delivered = [a for a, _ in api.offers[2:]]
    assert sorted(delivered) == ["alr-0", "alr-1", "alr-2"]  # once each after the outage


async def test_a_postgres_outage_never_ends_the_forwarder(aio_loop: object) -> None:
    dead = Database("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.2)
    await dead.open()
    metrics = Metrics()

    def outages() -> float:
        return metrics.registry.get_sample_value("bff_alert_ack_forwarder_outages_total") or 0

    try:
        async with trio.open_nursery() as nursery:
            api = ScriptedNotification()
            await nursery.start(run_ack_forwarder, AlertAckStore(dead), api, metrics, 0.05)
            await eventually(lambda: outages() >= 3, timeout=10)
            nursery.cancel_scope.cancel()
    finally:
        await dead.close()
    assert b"bff_alert_acks_unforwarded" in metrics.render()
