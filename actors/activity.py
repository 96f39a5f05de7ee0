"""Operator activity (``operator.activity.v1``): the ``OperatorActivity`` aggregate, one stream
per operator (``activity:<operatorId>``), kept 90 days like every ledger row
(``ledger/retention.py``; SERVICE_OVERVIEW §3, §5).

Every mutation, decision, acknowledgement and lock action appends one activity row, so
``./ops/ledger replay --tenant T --stream activity:<operatorId>`` shows one operator's shift.
The row is a pointer, not the record: ``ref`` names the stream (and attempt) holding the full
audit record. Whoever records an action builds the row with :func:`activity_event` and appends
it *in the same ledger append* as the record itself (one request of the group commit is one
transaction), so an action is never in the audit without being in the shift, or the reverse.

Activity streams are appended without an expected version (many devices may act for one
operator at once; telemetry never conflicts). Pass ``key`` for an idempotent row: the event id
then derives from it, so a retried append writes nothing new.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from ledger.model import NewEvent
from schemas.actor_events import OPERATOR_ACTIVITY, OperatorActivity

ACTIVITY_IDS = uuid.UUID("3c9e1f57-2b8d-4e0a-9f61-7d2a5b8c4e13")  # namespace of activity ids
_encoder = msgspec.json.Encoder()


def activity_stream(operator_id: str) -> str:
    return f"activity:{operator_id}"


def activity_id(tenant: str, operator_id: str, key: str) -> uuid.UUID:
    """The event id of the activity row recorded for ``key`` (stable across retries)."""
    return uuid.uuid5(ACTIVITY_IDS, f"{tenant}/{operator_id}/{key}")


def activity_event(
    *,
    tenant: str,
    operator_id: str,
    device_id: str,
    action: str,
    property_id: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
    ref: str | None = None,
    session_id: str | None = None,
    request_id: str | None = None,
    key: str | None = None,
    at: datetime | None = None,
) -> NewEvent:
    """The ``operator.activity.v1`` row for one action of ``operator_id`` on ``device_id``.

    ``action`` names what was done (``lock.revoke_key``, ``reservation.check_in``,
    ``alert.acknowledge``, ``suggestion.decide``, ``sync.cursor_advance``, …); ``outcome`` how
    it ended (``success``, ``failure``, ``unknown``, ``refused``, or the action's own word);
    ``key`` makes the row idempotent (see the module docstring).
    """
    moment = at or datetime.now(UTC)
    payload = OperatorActivity(
        action=action,
        operator_id=operator_id,
        device_id=device_id,
        at=moment,
        property_id=property_id,
        target=target,
        outcome=outcome,
        reason=reason,
        ref=ref,
        session_id=session_id,
    )
    return NewEvent(
        tenant=tenant,
        stream=activity_stream(operator_id),
        subject=OPERATOR_ACTIVITY,
        payload=msgspec.Raw(_encoder.encode(payload)),
        event_id=activity_id(tenant, operator_id, key) if key else uuid.uuid4(),
        operator_id=operator_id,
        device_id=device_id,
        request_id=request_id,
        occurred_at=moment,
    )
