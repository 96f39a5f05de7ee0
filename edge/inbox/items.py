"""Inbox items from their sources, and the alert list's merge. Pure functions: no I/O.

An alert or suggestion reaches the BFF three ways — a domain event (the projection), the
upstream's list (read-through) and, for alerts, the BFF's own acknowledgements (Postgres) — and
each is turned into the one wire shape here, so the routes and the projection agree on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import msgspec

from schemas.inbox import (
    AlertAck,
    AlertFilter,
    AlertItem,
    AlertRaised,
    SuggestionCreated,
    SuggestionItem,
)
from schemas.upstream import ai, notification


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (a source that leaves out the offset means UTC, as the
    contract's timestamps are), so items from different sources compare and sort."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def alert_from_event(event: AlertRaised) -> AlertItem:
    return AlertItem(
        alert_id=event.alert_id,
        property_id=event.property_id,
        severity=event.severity,
        category=event.category,
        title=event.title,
        status="open",
        raised_at=utc(event.occurred_at),
    )


def alert_from_upstream(alert: notification.Alert) -> AlertItem | None:
    """``None`` for a resolved alert: the inbox holds only alerts that still need someone."""
    if alert.status == "resolved":
        return None
    return AlertItem(
        alert_id=alert.id,
        property_id=alert.property_id,
        severity=alert.severity,
        category=alert.category,
        title=alert.title,
        status=alert.status,
        raised_at=utc(alert.raised_at),
        message=alert.message,
        acknowledged_at=None if alert.acknowledged_at is None else utc(alert.acknowledged_at),
        acknowledged_by=alert.acknowledged_by,
    )


def suggestion_from_event(event: SuggestionCreated) -> SuggestionItem:
    return SuggestionItem(
        suggestion_id=event.suggestion_id,
        property_id=event.property_id,
        category=event.category,
        title=event.title,
        confidence=event.confidence,
        expires_at=utc(event.expires_at),
        created_at=utc(event.occurred_at),
    )


def suggestion_from_upstream(s: ai.Suggestion) -> SuggestionItem | None:
    """``None`` unless the suggestion is still open (decided ones leave every inbox)."""
    if s.status != "open":
        return None
    return SuggestionItem(
        suggestion_id=s.id,
        property_id=s.property_id,
        category=s.category,
        title=s.title,
        confidence=s.confidence,
        expires_at=utc(s.expires_at),
        created_at=utc(s.created_at),
        summary=s.summary,
        rationale=s.rationale,
        impact_minor=s.impact_minor,
    )


def with_ack(item: AlertItem, ack: AlertAck | None) -> AlertItem:
    """The item as acknowledged when the BFF holds an ack for it that the source has not
    reflected yet (the ack is durable here before notification-service hears of it)."""
    if ack is None or item.status == "acknowledged":
        return item
    return msgspec.structs.replace(
        item, status="acknowledged", acknowledged_at=ack.at, acknowledged_by=ack.operator_id
    )


def merged(
    items: Iterable[AlertItem], acks: Mapping[str, AlertAck], wanted: AlertFilter
) -> list[AlertItem]:
    """Overlay the acks, keep what ``wanted`` asks for, newest first."""
    overlaid = (with_ack(item, acks.get(item.alert_id)) for item in items)
    kept = [item for item in overlaid if wanted == "all" or item.status == wanted]
    kept.sort(key=lambda item: (item.raised_at, item.alert_id), reverse=True)
    return kept


def live(items: Iterable[SuggestionItem], now: datetime) -> list[SuggestionItem]:
    """The suggestions that have not expired, newest first."""
    kept = [item for item in items if item.expires_at > now]
    kept.sort(key=lambda item: (item.created_at, item.suggestion_id), reverse=True)
    return kept
