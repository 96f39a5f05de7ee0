"""analytics-service: KPI snapshot (occupancy, ADR, RevPAR) with a short trend."""

from __future__ import annotations

from datetime import date, datetime

from schemas.upstream.common import Wire


class KpiPoint(Wire):
    date: date
    occupancy_pct: float
    adr_minor: int
    revpar_minor: int


class KpiSnapshot(Wire):
    property_id: str
    date: date
    currency: str
    occupancy_pct: float
    adr_minor: int
    revpar_minor: int
    rooms_sold: int
    rooms_available: int
    room_revenue_minor: int
    trend: list[KpiPoint]
    as_of: datetime
