"""Delivering recorded acknowledgements to notification-service (FAILURE_MODES F-12: "ack
idempotent retry").

An ack is durable in Postgres (``ledger.alert_acks``) and the ledger before notification-service
hears of it. The request that recorded it offers it once inline (:func:`deliver`); whatever that
did not deliver, :func:`run_ack_forwarder` delivers later: every ``interval_s`` it claims due
acks (leased: no other instance forwards them meanwhile), offers each, and marks it forwarded or
gives it back with a backoff.

Exactly once upstream in the normal case, and never twice in effect: every offer of one ack
carries the same ``Idempotency-Key`` (derived from tenant and alert), so a repeat after a lost
answer is a replay at notification-service, not a second acknowledgement.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import NamedTuple

import trio

from edge.inbox.instruments import InboxInstruments, inbox_instruments
from edge.metrics import Metrics
from edge.upstream.apis import NotificationApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from ledger.alert_acks import DELIVERED, AlertAckStore
from ledger.database import DatabaseUnavailable
from schemas.inbox import AlertAck
from schemas.upstream.notification import AcknowledgeRequest

log = logging.getLogger("bff.inbox.forwarder")

ACK_KEYS = uuid.UUID("5f0c2b7e-93d1-4a86-b0e4-2c7d18a9f361")  # namespace of ack idempotency keys
DELIVERY_BUDGET_S = 1.5  # one offer, its retry included (notification: 500 ms, 1 retry)
BATCH = 20  # acks per round: BATCH * DELIVERY_BUDGET_S stays well inside LEASE_S
LEASE_S = 60.0
MAX_BACKOFF_S = 300.0
TRANSIENT_STATUSES = (408, 425, 429)  # 4xx answers that say "later", not "no"


class Delivery(NamedTuple):
    """``done``: notification-service has the ack, or refused it for good (``outcome`` says
    which: ``DELIVERED`` or ``rejected:<status> <code>``); otherwise ``outcome`` is why not."""

    done: bool
    outcome: str


def idempotency_key(ack: AlertAck) -> str:
    """The same for every offer of one ack, from any instance."""
    return f"alert-ack-{uuid.uuid5(ACK_KEYS, f'{ack.tenant}/{ack.alert_id}')}"


async def deliver(
    notification: NotificationApi, ack: AlertAck, budget_s: float = DELIVERY_BUDGET_S
) -> Delivery:
    """Offer ``ack`` to notification-service once (its client's retry policy applies), within
    ``budget_s``. Never raises for what the upstream did."""
    request = AcknowledgeRequest(operator_id=ack.operator_id)
    try:
        with trio.fail_after(budget_s):
            await notification.acknowledge(
                ack.tenant, ack.property_id, ack.alert_id, request, idempotency_key(ack)
            )
    except UpstreamRejected as exc:
        if exc.status in TRANSIENT_STATUSES:
            return Delivery(False, f"answered {exc.status} {exc.upstream_code}")
        # 404 (no such alert), 409 (resolved meanwhile), ...: asking again changes nothing.
        return Delivery(True, f"rejected:{exc.status} {exc.upstream_code}")
    except UpstreamFailure as exc:
        if exc.kind == "drift":  # a 2xx answer we could not read: it took the ack
            return Delivery(True, DELIVERED)
        return Delivery(False, exc.message)
    except trio.TooSlowError:
        return Delivery(False, f"no answer within {budget_s} s")
    return Delivery(True, DELIVERED)


async def run_ack_forwarder(
    acks: AlertAckStore,
    notification: NotificationApi,
    metrics: Metrics,
    interval_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forward unforwarded acks every ``interval_s`` until cancelled. Never ends on an outage
    (Postgres or notification-service): it logs, counts and tries again later."""
    forwarder = AckForwarder(acks, notification, inbox_instruments(metrics), interval_s)
    task_status.started()
    await forwarder.run()


class AckForwarder:
    def __init__(
        self,
        acks: AlertAckStore,
        notification: NotificationApi,
        instruments: InboxInstruments,
        interval_s: float,
    ) -> None:
        self._acks = acks
        self._notification = notification
        self._m = instruments
        self._interval_s = interval_s
        self._failures = 0  # consecutive rounds that met an outage
        self._rng = random.Random()

    async def run(self) -> None:
        while True:
            try:
                full = await self.round()
            except DatabaseUnavailable as exc:
                self._failures += 1
                self._m.forwarder_outages.inc()
                if self._failures == 1 or self._failures % 50 == 0:  # not every interval
                    log.warning(
                        "ack forwarder: Postgres unavailable",
                        extra={"rounds": self._failures, "error": str(exc)[:300]},
                    )
                full = False
            if not full:  # a full batch: more may be due, go on at once
                await trio.sleep(self._interval_s)

    async def round(self) -> bool:
        """One batch; True when it was full (more may be due)."""
        claimed = await self._acks.claim_unforwarded(BATCH, LEASE_S)
        for index, ack in enumerate(claimed):
            result = await deliver(self._notification, ack)
            if not result.done:
                await self._back_off(claimed[index:], result.outcome)
                break
            await self._forwarded(ack, result, "forwarder")
        else:
            if claimed:  # an idle round says nothing: the backed-off acks are not due yet
                self._failures = 0
        self._m.ack_backlog.set(await self._acks.pending_count())
        return len(claimed) == BATCH and self._failures == 0

    async def _forwarded(self, ack: AlertAck, result: Delivery, path: str) -> None:
        outcome = "delivered" if result.outcome == DELIVERED else "rejected"
        self._m.ack_forwards.labels(path, outcome).inc()
        if outcome == "rejected":
            log.warning(
                "notification-service refused an acknowledgement for good",
                extra={"tenant": ack.tenant, "alertId": ack.alert_id, "outcome": result.outcome},
            )
        await self._acks.mark_forwarded(ack.tenant, ack.alert_id, result.outcome)

    async def _back_off(self, rest: list[AlertAck], error: str) -> None:
        """notification-service is failing: give this ack and the rest of the batch back, due
        again after a backoff that doubles with each failing round (with jitter)."""
        self._failures += 1
        self._m.ack_forwards.labels("forwarder", "failed").inc()
        ceiling = min(MAX_BACKOFF_S, self._interval_s * 2 ** min(self._failures - 1, 16))
        retry_in = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        log.warning(
            "notification-service did not take an acknowledgement; retrying later",
            extra={"pending": len(rest), "retryInS": round(retry_in, 2), "error": error[:200]},
        )
        for ack in rest:
            await self._acks.release(ack.tenant, ack.alert_id, retry_in, error)
