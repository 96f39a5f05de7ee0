"""The payloads the actors record in the ledger, and their subjects.

The ledger is replayed forever (activation, audit, ``./ops/ledger replay``), so every event ever
written must still decode: never rename, remove or change the type of a field below, and add
new fields only with a default. A changed meaning gets a new subject (``….v2``), not a changed
Struct. The fields every reader relies on are marked *frozen*.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

SUBJECT_PREFIX = "melmastoon.bff.backoffice."
HEARTBEAT = SUBJECT_PREFIX + "device.heartbeat.v1"
SESSION_OPENED = SUBJECT_PREFIX + "session.opened.v1"
SESSION_CLOSED = SUBJECT_PREFIX + "session.closed.v1"
DEVICE_SUBSCRIBED = SUBJECT_PREFIX + "property.device_subscribed.v1"
DEVICE_UNSUBSCRIBED = SUBJECT_PREFIX + "property.device_unsubscribed.v1"


class HeartbeatRecorded(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``device.heartbeat.v1`` (sampled telemetry). Frozen: ``commandId``, ``appVersion``,
    ``at``."""

    command_id: str
    app_version: str
    at: datetime
    operator_id: str | None = None
    # The heartbeat's sync fields, as the device reported them (cursor: canonical decimal).
    sync_cursor: str | None = None
    queued_actions: int | None = None
    online_since: datetime | None = None


class SessionOpened(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``session.opened.v1``. Frozen: ``sessionId``, ``operatorId`` (the DeviceActor folds
    them), ``role``, ``propertyIds``, ``at``."""

    session_id: str
    operator_id: str
    role: str
    property_ids: list[str]
    at: datetime


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``session.closed.v1``. Frozen: ``sessionId`` (folded), ``reason``, ``at``."""

    session_id: str
    reason: str
    at: datetime


class DeviceSubscription(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``property.device_subscribed.v1`` / ``…unsubscribed.v1``. Frozen: ``deviceId``."""

    device_id: str


FEED_DELIVERED = SUBJECT_PREFIX + "sse.delivered.v1"


class FeedDelivered(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``sse.delivered.v1``: a stream event put in the feeds of ``deviceIds`` (the delivery log
    an audit replays to see what each device was shown). Recorded before the feeds are written,
    under an event id derived from ``key``, so a retry or another instance records it once.
    Frozen: ``key``, ``event``, ``data``, ``deviceIds``, ``at``."""

    key: str
    event: str
    data: dict[str, object]
    device_ids: list[str]
    at: datetime
    property_id: str | None = None
    session_id: str | None = None


ALERT_ACKNOWLEDGED = SUBJECT_PREFIX + "alert.acknowledged.v1"
SUGGESTION_DECIDED = SUBJECT_PREFIX + "ai_suggestion.decided.v1"


class AlertAcknowledged(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``alert.acknowledged.v1`` (stream ``alert:<alertId>``, one row: the first ack). Frozen:
    ``alertId``, ``propertyId``, ``operatorId``, ``deviceId``, ``at``."""

    alert_id: str
    property_id: str
    operator_id: str
    device_id: str
    at: datetime


class SuggestionDecided(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``ai_suggestion.decided.v1`` (stream ``suggestion:<suggestionId>``, one row). Frozen:
    ``suggestionId``, ``propertyId``, ``decision``, ``operatorId``, ``deviceId``, ``at``."""

    suggestion_id: str
    property_id: str
    decision: str
    operator_id: str
    device_id: str
    at: datetime
    modification: dict[str, object] | None = None


# --- sync (stream device:<deviceId>) ------------------------------------------------------------

CURSOR_ADVANCED = SUBJECT_PREFIX + "sync.cursor_advanced.v1"
HANDSHAKE_COMPLETED = SUBJECT_PREFIX + "sync.handshake_completed.v1"


class CursorAdvanced(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``sync.cursor_advanced.v1``: the device's cursor in ``DeviceSyncStatus`` moved forward to
    ``cursor`` (a canonical decimal string, compared as an integer) at ``revision``, reported
    by ``source`` (``device``: ``POST /sync/cursor``; ``heartbeat``). One event per revision.
    Frozen: ``cursor``, ``revision``, ``source``, ``at``."""

    cursor: str
    revision: int
    source: str
    at: datetime
    previous: str | None = None
    operator_id: str | None = None


class HandshakeCompleted(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``sync.handshake_completed.v1``: sync-service granted the device a sync session.
    ``cursor`` is sync-service's authoritative cursor (``None`` when it could not be read),
    ``cachedCursor`` what the BFF held before; ``cursorReset`` when the cache was reset to the
    authoritative value (FAILURE_MODES F-35). Never the session token. Frozen: ``cursor``,
    ``cachedCursor``, ``cursorReset``, ``mode``, ``scopes``, ``at``."""

    cursor: str | None
    cached_cursor: str | None
    cursor_reset: bool
    mode: str
    scopes: list[str]
    at: datetime
    operator_id: str | None = None


# --- mutations and lock actions (audit: an attempt row, then its outcome row) -----------------

LOCK_ATTEMPTED = SUBJECT_PREFIX + "lock.action_attempted.v1"
LOCK_PROXIED = SUBJECT_PREFIX + "lock.action_proxied.v1"
MUTATION_ATTEMPTED = SUBJECT_PREFIX + "mutation.attempted.v1"
MUTATION_PROXIED = SUBJECT_PREFIX + "mutation.proxied.v1"


class MutationAttempted(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``lock.action_attempted.v1`` / ``mutation.attempted.v1`` (stream of the target, e.g.
    ``lock:<reservationId>``): an operator's mutation about to be sent upstream, durable before
    it is. Frozen: ``attemptId``, ``action``, ``target``, ``propertyId``, ``operatorId``,
    ``deviceId``, ``sessionId``, ``at``."""

    attempt_id: str
    action: str  # e.g. "lock.revoke_key", "reservation.check_in"
    target: str  # the target's stream, e.g. "lock:res-1"
    property_id: str
    operator_id: str
    device_id: str
    session_id: str
    at: datetime
    idempotency_key: str | None = None
    mfa_attestation_id: str | None = None  # the step-up attestation's jti (never the token)
    request: dict[str, object] | None = None  # what the operator asked for (the body's fields)
    request_id: str | None = None


class MutationProxied(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``lock.action_proxied.v1`` / ``mutation.proxied.v1`` (same stream as its attempt): how
    the attempt ended, durable before the desktop hears it. ``outcome``: ``success``,
    ``failure`` (with ``reason``), ``unknown`` (the upstream may have acted: a timeout or an
    unreadable answer) or ``refused`` (the BFF refused before calling the upstream; then it is
    appended together with its attempt). Frozen: ``attemptId``, ``action``, ``target``,
    ``outcome``, ``at``."""

    attempt_id: str
    action: str
    target: str
    property_id: str
    outcome: str
    at: datetime
    reason: str | None = None  # the error code (the upstream's own code when it refused)
    detail: str | None = None
    status: int | None = None  # what the desktop was answered
    result: dict[str, object] | None = None  # e.g. the key ids issued or revoked


OPERATOR_ACTIVITY = SUBJECT_PREFIX + "operator.activity.v1"


class OperatorActivity(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``operator.activity.v1`` (stream ``activity:<operatorId>``, the ``OperatorActivity``
    aggregate, 90 days): one thing an operator did, so that one stream replays their shift.
    ``ref`` names the full record (e.g. ``lock:res-1#<attemptId>``). Frozen: ``action``,
    ``operatorId``, ``deviceId``, ``at``."""

    action: str
    operator_id: str
    device_id: str
    at: datetime
    property_id: str | None = None
    target: str | None = None
    outcome: str | None = None
    reason: str | None = None
    ref: str | None = None
    session_id: str | None = None
