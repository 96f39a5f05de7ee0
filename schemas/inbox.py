"""The AI suggestion and alert inboxes: the domain events that feed them (API contract §8), the
items the inbox routes answer with, and the decide / acknowledge requests (contract §9).

An event's fields are the minimum the contract pins; more may follow and are ignored. The same
fields are the ``data`` of the matching stream event (``alert``, ``ai.suggestion``, …).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.identifiers import PLAIN_TEXT_PATTERN, Identifier

ALERT_RAISED = "melmastoon.alert.raised.v1"
ALERT_RESOLVED = "melmastoon.alert.resolved.v1"
SUGGESTION_CREATED = "melmastoon.ai.suggestion.created.v1"
SUGGESTION_INVALIDATED = "melmastoon.ai.suggestion.invalidated.v1"
INBOX_SUBJECTS = (ALERT_RAISED, ALERT_RESOLVED, SUGGESTION_CREATED, SUGGESTION_INVALIDATED)

Text = Annotated[str, msgspec.Meta(max_length=500)]
Short = Annotated[str, msgspec.Meta(max_length=64)]


class _Event(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    tenant_id: Identifier
    property_id: Identifier


class AlertRaised(_Event, frozen=True, kw_only=True):
    alert_id: Identifier
    severity: Short
    category: Short
    title: Text
    occurred_at: datetime


class AlertResolved(_Event, frozen=True, kw_only=True):
    alert_id: Identifier
    occurred_at: datetime


class SuggestionCreated(_Event, frozen=True, kw_only=True):
    suggestion_id: Identifier
    category: Short
    title: Text
    confidence: float
    expires_at: datetime
    occurred_at: datetime


class SuggestionInvalidated(_Event, frozen=True, kw_only=True):
    suggestion_id: Identifier
    occurred_at: datetime
    reason: Short | None = None


Decision = Literal["accept", "reject", "modify"]
AlertFilter = Literal["open", "acknowledged", "all"]


# --- acknowledgements (Postgres: ledger.alert_acks; the actors see them through actors.ports) ---
# Defined here rather than in ``actors.ports`` so that ``ledger`` (below ``actors``) can return
# them; ``actors.ports`` re-exports both.


class AlertAck(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    property_id: str
    alert_id: str
    operator_id: str
    device_id: str
    at: datetime


class RecordedAck(msgspec.Struct, frozen=True, kw_only=True):
    """The acknowledgement on record (the first one: a later ack changes nothing)."""

    ack: AlertAck
    created: bool  # this call recorded it
    forwarded: bool  # notification-service has it


# --- the inbox routes (API contract §9) ------------------------------------------------------

SuggestionCategory = Literal[
    "pricing", "upsell", "housekeeping", "maintenance", "staffing", "guest_experience"
]
AlertStatus = Literal["open", "acknowledged"]
# A modification is a few named values (ai-orchestrator's ``modifications``), bounded.
# What an operator sends (kept in the ledger): plain text only.
ModificationField = Annotated[str, msgspec.Meta(max_length=64, pattern=PLAIN_TEXT_PATTERN)]
ModificationValue = Annotated[str, msgspec.Meta(max_length=500, pattern=PLAIN_TEXT_PATTERN)]
Modification = Annotated[
    dict[ModificationField, ModificationValue], msgspec.Meta(min_length=1, max_length=32)
]


class _Wire(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class SuggestionsQuery(_Wire):
    property_id: Identifier
    category: SuggestionCategory | None = None


class AlertsQuery(_Wire):
    property_id: Identifier
    filter: AlertFilter = "open"


class DecideBody(_Wire):
    property_id: Identifier
    decision: Decision
    modification: Modification | None = None


class AcknowledgeBody(_Wire):
    property_id: Identifier


class SuggestionItem(_Wire):
    """One open suggestion, from the ``ai.suggestion.created`` event or ai-orchestrator's list
    (only the latter carries ``summary``, ``rationale`` and ``impactMinor``)."""

    suggestion_id: str
    property_id: str
    category: str
    title: str
    confidence: float
    expires_at: datetime
    created_at: datetime
    summary: str | None = None
    rationale: str | None = None
    impact_minor: int | None = None


class SuggestionList(_Wire):
    property_id: str
    items: list[SuggestionItem]
    degraded: bool = False  # ai-orchestrator could not be asked: the list may be incomplete


class Decided(_Wire):
    suggestion_id: str
    property_id: str
    decision: Decision
    status: str  # ai-orchestrator's status after the decision (accepted, rejected, modified)
    decided_at: datetime | None = None


class AlertItem(_Wire):
    """One alert that is not resolved. ``status`` is ``acknowledged`` as soon as the BFF has
    recorded an acknowledgement, whether or not notification-service has heard of it yet."""

    alert_id: str
    property_id: str
    severity: str
    category: str
    title: str
    status: AlertStatus
    raised_at: datetime
    message: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


class AlertList(_Wire):
    property_id: str
    filter: AlertFilter
    items: list[AlertItem]
    degraded: bool = False  # notification-service could not be asked: served from the inbox


class Acknowledged(_Wire):
    """The acknowledgement on record: the first one (a repeated ack changes nothing)."""

    alert_id: str
    property_id: str
    acknowledged_at: datetime
    acknowledged_by: str
    changed: bool  # this request recorded it
    # notification-service accepted it; until then the BFF keeps offering it (unless it refused
    # it for good: an alert it does not know, or one resolved meanwhile)
    forwarded: bool
