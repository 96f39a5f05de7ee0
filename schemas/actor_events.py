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
