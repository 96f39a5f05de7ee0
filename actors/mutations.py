"""The DeviceActor's mutation recording: the audit of every domain mutation and lock action.

An attempt is recorded before its upstream is called, its outcome before the desktop hears it
(FAILURE_MODES F-27): a crash in between leaves an attempt without an outcome, which
``./ops/ledger verify`` reports. Both rows go to the *target's* stream (``lock:<reservationId>``,
``reservation:<id>``, ``folio:<id>``, ``housekeeping-task:<id>``, ``work-order:<id>``), so one
stream tells everything that was attempted on one thing; the outcome's append also carries the
operator's ``operator.activity.v1`` row (``actors/activity.py``): one transaction.

Why through the device's actor: it is the device's one writer, so the device id in the audit
is its address, not something a request said, and a session this device has seen closed
cannot record (or start) another mutation. The rows do not fold into the device's state: its
own stream stays small (activation replays it), and the target streams are appended without an
expected version (every instance may write them).

Every row's event id derives from the attempt id the edge chose, so a retried ask (after a
timeout with unknown outcome) records nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from actors.activity import activity_event
from actors.address import ActorAddress
from actors.errors import Refused
from actors.messages import Message
from actors.ports import EventLog
from ledger.model import NewEvent
from schemas.actor_events import (
    LOCK_ATTEMPTED,
    LOCK_PROXIED,
    MUTATION_ATTEMPTED,
    MUTATION_PROXIED,
    MutationAttempted,
    MutationProxied,
)
from schemas.identifiers import Identifier

MUTATION_IDS = uuid.UUID("5d0b8f3a-6e21-4c79-a4d8-2f9c1e7b3a60")  # namespace of audit row ids

MutationAction = Literal[
    "lock.issue_key",
    "lock.revoke_key",
    "reservation.check_in",
    "reservation.check_out",
    "folio.charge",
    "folio.refund",
    "housekeeping.task_transition",
    "maintenance.work_order_transition",
]
Outcome = Literal["success", "failure", "unknown", "refused"]
Target = Annotated[str, msgspec.Meta(min_length=3, max_length=160, pattern=r"^[a-z-]+:[^\s]+$")]
Text = Annotated[str, msgspec.Meta(max_length=500)]


class AuditContext(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Who attempts what, as the edge assembled it (the device is the actor's own id)."""

    attempt_id: Identifier
    action: MutationAction
    target: Target  # the target's stream
    property_id: Identifier
    operator_id: Identifier
    session_id: Identifier
    idempotency_key: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    mfa_attestation_id: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    request: dict[str, Any] | None = None
    request_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RecordMutationAttempt(Message, frozen=True, tag="recordMutationAttempt"):
    """About to call the upstream: answered with :class:`MutationRecorded` once durable."""

    context: AuditContext


class RecordMutationOutcome(Message, frozen=True, tag="recordMutationOutcome"):
    """How the attempt ended (with the operator's activity row, in one append). A ``refused``
    outcome never reached the upstream and is appended together with its attempt."""

    context: AuditContext
    outcome: Outcome
    reason: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    detail: Text | None = None
    status: int | None = None
    result: dict[str, Any] | None = None


MutationMessage = RecordMutationAttempt | RecordMutationOutcome
MUTATION_MESSAGES = (RecordMutationAttempt, RecordMutationOutcome)


class MutationRecorded(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    attempt_id: str
    position: int  # of the attempt row (attempt) or the outcome row (outcome)


class SessionEnded(Refused):
    """The device has seen this session closed: it records (and so starts) nothing more."""


def is_lock(action: str) -> bool:
    return action.startswith("lock.")


def row_id(tenant: str, attempt_id: str, row: str) -> uuid.UUID:
    return uuid.uuid5(MUTATION_IDS, f"{tenant}/{attempt_id}/{row}")


def attempt_row(address: ActorAddress, context: AuditContext, at: datetime) -> NewEvent:
    payload = MutationAttempted(
        attempt_id=context.attempt_id,
        action=context.action,
        target=context.target,
        property_id=context.property_id,
        operator_id=context.operator_id,
        device_id=address.id,
        session_id=context.session_id,
        at=at,
        idempotency_key=context.idempotency_key,
        mfa_attestation_id=context.mfa_attestation_id,
        request=context.request,
        request_id=context.request_id,
    )
    subject = LOCK_ATTEMPTED if is_lock(context.action) else MUTATION_ATTEMPTED
    return _row(address, context, subject, payload, "attempt", at)


def outcome_rows(
    address: ActorAddress, message: RecordMutationOutcome, at: datetime
) -> list[NewEvent]:
    """The outcome row and the operator's activity row (after the attempt row when refused)."""
    context = message.context
    payload = MutationProxied(
        attempt_id=context.attempt_id,
        action=context.action,
        target=context.target,
        property_id=context.property_id,
        outcome=message.outcome,
        at=at,
        reason=message.reason,
        detail=message.detail,
        status=message.status,
        result=message.result,
    )
    subject = LOCK_PROXIED if is_lock(context.action) else MUTATION_PROXIED
    rows = [attempt_row(address, context, at)] if message.outcome == "refused" else []
    rows.append(_row(address, context, subject, payload, "outcome", at))
    rows.append(
        activity_event(
            tenant=address.tenant,
            operator_id=context.operator_id,
            device_id=address.id,
            action=context.action,
            property_id=context.property_id,
            target=context.target,
            outcome=message.outcome,
            reason=message.reason,
            ref=f"{context.target}#{context.attempt_id}",
            session_id=context.session_id,
            request_id=context.request_id,
            key=f"mutation/{context.attempt_id}",
            at=at,
        )
    )
    return rows


_encoder = msgspec.json.Encoder()


def _row(
    address: ActorAddress,
    context: AuditContext,
    subject: str,
    payload: msgspec.Struct,
    row: str,
    at: datetime,
) -> NewEvent:
    return NewEvent(
        tenant=address.tenant,
        stream=context.target,
        subject=subject,
        payload=msgspec.Raw(_encoder.encode(payload)),
        event_id=row_id(address.tenant, context.attempt_id, row),
        operator_id=context.operator_id,
        device_id=address.id,
        request_id=context.request_id,
        occurred_at=at,
    )


async def record_mutation(
    log: EventLog,
    address: ActorAddress,
    closed_sessions: tuple[str, ...],
    message: RecordMutationAttempt | RecordMutationOutcome,
) -> MutationRecorded:
    """Record an attempt or an outcome (durable on return). An attempt in a session the
    device has seen closed is refused (:class:`SessionEnded`); an outcome is always recorded:
    what was attempted must end in the audit."""
    context = message.context
    at = datetime.now(UTC)
    if isinstance(message, RecordMutationAttempt):
        if context.session_id in closed_sessions:
            raise SessionEnded(address, "the session is closed")
        results = await log.append([attempt_row(address, context, at)])
        return MutationRecorded(attempt_id=context.attempt_id, position=results[0].position)
    rows = outcome_rows(address, message, at)
    results = await log.append(rows)
    outcome_at = len(rows) - 2  # the outcome row comes just before the activity row
    return MutationRecorded(attempt_id=context.attempt_id, position=results[outcome_at].position)
