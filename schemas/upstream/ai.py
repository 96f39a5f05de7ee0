"""ai-orchestrator-service: AI suggestions per property and operator decisions on them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire

SuggestionCategory = Literal[
    "pricing", "upsell", "housekeeping", "maintenance", "staffing", "guest_experience"
]
SuggestionStatus = Literal["open", "accepted", "rejected", "modified", "expired", "invalidated"]
Decision = Literal["accept", "reject", "modify"]


class Suggestion(Wire):
    id: str
    tenant_id: str
    property_id: str
    category: SuggestionCategory
    title: str
    summary: str
    rationale: str
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    impact_minor: int | None
    status: SuggestionStatus
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


class SuggestionList(Wire):
    property_id: str
    items: list[Suggestion]
    total: int


class DecideRequest(Wire):
    decision: Decision
    operator_id: str
    note: str | None = None
    modifications: dict[str, str] | None = None
