"""notification-service: the alert inbox and acknowledgements."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from schemas.upstream.common import Wire

Severity = Literal["info", "warning", "critical"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
AlertCategory = Literal[
    "overbooking", "payment", "maintenance", "housekeeping", "guest", "security", "system"
]


class Alert(Wire):
    id: str
    tenant_id: str
    property_id: str
    severity: Severity
    category: AlertCategory
    title: str
    message: str
    status: AlertStatus
    source: str
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None


class AlertList(Wire):
    property_id: str
    items: list[Alert]
    total: int


class AcknowledgeRequest(Wire):
    operator_id: str
    note: str | None = None
