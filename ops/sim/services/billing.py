"""Simulated billing-service: folios with charges, payments and refunds; the folio summary.

A folio is derived on first access from its reservation (room nights posted so far plus a few
extras, deterministically from the seed), then changes only through charges and refunds.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ops.sim.context import Sim, conflict, date_param, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, utc_now
from schemas.upstream.billing import (
    ChargeRequest,
    Folio,
    FolioLine,
    FolioSummary,
    LineKind,
    RefundRequest,
)
from schemas.upstream.reservation import Reservation

BASE = "/billing/v1/tenants/{tenantId}/properties/{propertyId}"
EXTRAS = (
    ("FNB", "Restaurant", 1200, 6500),
    ("MINIBAR", "Minibar", 300, 1800),
    ("SPA", "Spa treatment", 4000, 12000),
    ("LAUNDRY", "Laundry", 500, 2500),
    ("PARKING", "Valet parking", 1000, 2500),
)


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/folios/{folioId}", lambda r: get_folio(sim, r))
    router.add(
        "GET", BASE + "/reservations/{reservationId}/folio", lambda r: by_reservation(sim, r)
    )
    router.add("GET", BASE + "/folio-summary", lambda r: summary(sim, r))
    router.add("POST", BASE + "/folios/{folioId}/charges", lambda r: charge(sim, r))
    router.add("POST", BASE + "/folios/{folioId}/refunds", lambda r: refund(sim, r))


def folio_for(sim: Sim, ps: PropertyState, res: Reservation) -> Folio:
    folio = ps.folios.get(res.folio_id)
    if folio is None:
        folio = _derive(sim.world.seed, ps, res)
        ps.folios[folio.id] = folio
    return folio


def _derive(seed: int, ps: PropertyState, res: Reservation) -> Folio:
    rng = random.Random(f"{seed}:{res.id}")
    tz = ZoneInfo(ps.seed.time_zone)
    scale = ps.seed.rate_scale
    lines: list[FolioLine] = []

    def post(kind: LineKind, code: str, text: str, amount: int, day: date, hour: int) -> None:
        at = min(
            datetime.combine(day, time(hour, rng.randint(0, 59)), tz).astimezone(UTC), utc_now()
        )
        lines.append(
            FolioLine(
                id=f"fln-{res.id}-{len(lines) + 1:03d}",
                kind=kind,
                code=code,
                description=text,
                amount_minor=amount,
                posted_at=at,
                posted_by="night-audit" if code == "ROOM" else "pos",
            )
        )

    if res.status in ("checked_in", "checked_out"):
        last = min(res.departure_date, ps.today())
        night = res.arrival_date
        while night < last:
            post("charge", "ROOM", f"Room {res.room_number} night", res.rate_minor, night, 23)
            for code, text, low, high in EXTRAS:
                if rng.random() < 0.15:
                    post(
                        "charge", code, text, rng.randint(low, high) // 100 * 100 * scale, night, 20
                    )
            night += timedelta(days=1)
        charged = sum(line.amount_minor for line in lines)
        if res.status == "checked_out" and charged:
            post("payment", "CARD", "Card payment", charged, res.departure_date, 10)
        elif charged:
            post("payment", "CARD", "Deposit", res.rate_minor, res.arrival_date, 15)
    return _totals(
        Folio(
            id=res.folio_id,
            tenant_id=ps.tenant_id,
            property_id=ps.id,
            reservation_id=res.id,
            guest_name=f"{res.guest.first_name} {res.guest.last_name}",
            currency=ps.seed.currency,
            status="open",
            lines=lines,
            charges_minor=0,
            payments_minor=0,
            balance_minor=0,
        )
    )


def _totals(folio: Folio) -> Folio:
    folio.charges_minor = sum(x.amount_minor for x in folio.lines if x.kind == "charge")
    paid = sum(x.amount_minor for x in folio.lines if x.kind == "payment")
    refunded = sum(x.amount_minor for x in folio.lines if x.kind == "refund")
    folio.payments_minor = paid - refunded
    folio.balance_minor = folio.charges_minor - folio.payments_minor
    folio.status = "settled" if folio.balance_minor == 0 and folio.lines else "open"
    return folio


def _folio_by_id(sim: Sim, ps: PropertyState, folio_id: str) -> Folio:
    rid = folio_id.removeprefix("fol-")
    res = ps.reservations.get(rid)
    if res is None or res.folio_id != folio_id:
        raise not_found("folio")
    return folio_for(sim, ps, res)


async def get_folio(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    return Response(200, _folio_by_id(sim, ps, request.params["folioId"]))


async def by_reservation(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    res = ps.reservations.get(request.params["reservationId"])
    if res is None:
        raise not_found("reservation")
    return Response(200, folio_for(sim, ps, res))


async def summary(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    folios = [folio_for(sim, ps, ps.reservations[r]) for r in ps.in_house]
    tz = ZoneInfo(ps.seed.time_zone)

    def on_day(line: FolioLine) -> bool:
        return line.posted_at.astimezone(tz).date() == day

    lines = [line for f in folios for line in f.lines if on_day(line)]
    return Response(
        200,
        FolioSummary(
            property_id=ps.id,
            date=day,
            currency=ps.seed.currency,
            open_folios=sum(1 for f in folios if f.status == "open"),
            total_balance_minor=sum(f.balance_minor for f in folios),
            charges_today_minor=sum(x.amount_minor for x in lines if x.kind == "charge"),
            payments_today_minor=sum(x.amount_minor for x in lines if x.kind == "payment"),
        ),
    )


async def charge(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    folio = _folio_by_id(sim, ps, request.params["folioId"])
    body: ChargeRequest = request.decode(ChargeRequest)
    res = ps.reservations[folio.reservation_id]
    if res.status not in ("checked_in", "booked"):
        raise conflict(f"folio of a {res.status} reservation is closed to charges")
    folio.lines.append(
        FolioLine(
            id=f"fln-{res.id}-{len(folio.lines) + 1:03d}",
            kind="charge",
            code=body.code,
            description=body.description,
            amount_minor=body.amount_minor,
            posted_at=utc_now(),
            posted_by=body.operator_id,
        )
    )
    return Response(201, _totals(folio))


async def refund(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    folio = _folio_by_id(sim, ps, request.params["folioId"])
    body: RefundRequest = request.decode(RefundRequest)
    if body.amount_minor > folio.payments_minor:
        raise conflict("refund exceeds what was paid", "REFUND_EXCEEDS_PAYMENTS")
    folio.lines.append(
        FolioLine(
            id=f"fln-{folio.reservation_id}-{len(folio.lines) + 1:03d}",
            kind="refund",
            code="REFUND",
            description=body.reason,
            amount_minor=body.amount_minor,
            posted_at=utc_now(),
            posted_by=body.operator_id,
        )
    )
    return Response(201, _totals(folio))
