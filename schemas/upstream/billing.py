"""billing-service: folios (charges, payments, refunds) and the property's folio summary."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire

LineKind = Literal["charge", "payment", "refund"]
ChargeCode = Literal["ROOM", "TAX", "FNB", "MINIBAR", "SPA", "LAUNDRY", "PARKING", "MISC"]
PositiveMinor = Annotated[int, msgspec.Meta(gt=0, le=100_000_000)]


class FolioLine(Wire):
    id: str
    kind: LineKind
    code: str
    description: str
    amount_minor: int
    posted_at: datetime
    posted_by: str


class Folio(Wire):
    id: str
    tenant_id: str
    property_id: str
    reservation_id: str
    guest_name: str
    currency: str
    status: Literal["open", "settled"]
    lines: list[FolioLine]
    charges_minor: int
    payments_minor: int
    balance_minor: int


class FolioSummary(Wire):
    property_id: str
    date: date
    currency: str
    open_folios: int
    total_balance_minor: int
    charges_today_minor: int
    payments_today_minor: int


class ChargeRequest(Wire):
    code: ChargeCode
    description: Annotated[str, msgspec.Meta(max_length=200)]
    amount_minor: PositiveMinor
    operator_id: str


class RefundRequest(Wire):
    amount_minor: PositiveMinor
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    operator_id: str
