"""The workbench reads (SERVICE_OVERVIEW §4): today, arrivals, departures, in-house and the
housekeeping and maintenance boards.

Each view is cached 15 s per (tenant, property, view[, date]) and built once however many
operators ask (single-flight through the PropertyActor). Degradation: reservation-service down
→ 502 UPSTREAM_UNAVAILABLE (F-4); housekeeping/maintenance down → the last board, marked
``stale``, if it is at most ``BFF_WORKBENCH_STALE_MAX_S`` old, else 502 (F-7, F-8).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import trio
from quart import Response

from edge.api import Api, decode_query, request_id
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.dashboard.engine import DashboardEngine
from edge.dashboard.flight import Flight
from edge.dashboard.telemetry import WORKBENCH_OPENED
from edge.dashboard.views import ViewSpec
from edge.errors import ApiError, Code
from schemas import dashboard as d

api = Api()
MAX_DAYS_AWAY = 366
JSON = "application/json; charset=utf-8"
BASE = "/bff/backoffice/v1"
_encoder = msgspec.json.Encoder()
# Besides the auth chain's codes (added to the OpenAPI document from ``auth=``):
ERRORS = (Code.UPSTREAM_UNAVAILABLE, Code.SCHEMA_DRIFT)


@api.route(
    f"{BASE}/today",
    summary="Today at a glance: arrival, departure and in-house counts, next arrivals",
    tag="workbench",
    query=d.PropertyQuery,
    response=d.TodayView,
    errors=ERRORS,
    auth="read",
)
async def today(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.PropertyQuery)
    return await _serve(services, principal, query.property_id, ViewSpec("today"), None)


@api.route(
    f"{BASE}/arrivals",
    summary="Expected arrivals of a day (default today), sorted by ETA",
    tag="workbench",
    query=d.DayListQuery,
    response=d.GuestListView,
    errors=ERRORS,
    auth="read",
)
async def arrivals(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.DayListQuery)
    spec = ViewSpec("arrivals", _within_reach(query.date))
    return await _serve(services, principal, query.property_id, spec, query.limit)


@api.route(
    f"{BASE}/departures",
    summary="Expected departures of a day (default today), sorted by room",
    tag="workbench",
    query=d.DayListQuery,
    response=d.GuestListView,
    errors=ERRORS,
    auth="read",
)
async def departures(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.DayListQuery)
    spec = ViewSpec("departures", _within_reach(query.date))
    return await _serve(services, principal, query.property_id, spec, query.limit)


@api.route(
    f"{BASE}/in-house",
    summary="In-house guests, sorted by room",
    tag="workbench",
    query=d.ListQuery,
    response=d.GuestListView,
    errors=ERRORS,
    auth="read",
)
async def in_house(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.ListQuery)
    return await _serve(services, principal, query.property_id, ViewSpec("inHouse"), query.limit)


@api.route(
    f"{BASE}/housekeeping/board",
    summary="Today's housekeeping task board (stale copy while housekeeping-service is down)",
    tag="workbench",
    query=d.ListQuery,
    response=d.HousekeepingBoardView,
    errors=ERRORS,
    auth="read",
)
async def housekeeping_board(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.ListQuery)
    spec = ViewSpec("housekeepingBoard")
    return await _serve(services, principal, query.property_id, spec, query.limit)


@api.route(
    f"{BASE}/maintenance/board",
    summary="Open work orders by priority (stale copy while maintenance-service is down)",
    tag="workbench",
    query=d.ListQuery,
    response=d.MaintenanceBoardView,
    errors=ERRORS,
    auth="read",
)
async def maintenance_board(services: Services, *, principal: Principal) -> Response:
    query = decode_query(d.ListQuery)
    spec = ViewSpec("maintenanceBoard")
    return await _serve(services, principal, query.property_id, spec, query.limit)


# --- serving one view ------------------------------------------------------------------------


async def _serve(
    services: Services,
    principal: Principal,
    property_id: str,
    spec: ViewSpec,
    limit: int | None,
) -> Response:
    principal.require_property(property_id)
    engine = services.dashboard
    started = time.perf_counter()
    flight: Flight[bytes] | None = None
    outcome, error = "error", None
    try:
        with trio.move_on_after(engine.timing.workbench_deadline_s + engine.lock_s + 0.5):
            flight = await engine.view(principal.tenant, property_id, spec)
            await flight.wait()
        body = _result(flight, spec)
        outcome = "stale" if flight is not None and flight.partial else "ok"
    except ApiError as exc:
        error = exc.code.wire
        raise
    finally:
        _record(engine, principal, property_id, spec, flight, outcome, error, started)
    return Response(
        _bounded(body, spec, limit), content_type=JSON, headers={"Cache-Control": "no-store"}
    )


def _result(flight: Flight[bytes] | None, spec: ViewSpec) -> bytes:
    """The view's body, or its failure as a fresh error (a flight's error is shared by every
    request that followed it, so it is never re-raised as the same object)."""
    if flight is None or not flight.finished:
        raise ApiError(
            Code.UPSTREAM_UNAVAILABLE, f"{spec.upstream} did not answer within the deadline"
        )
    if flight.error is not None:
        exc = flight.error
        if isinstance(exc, ApiError):
            raise ApiError(exc.code, exc.message)
        raise ApiError(Code.INTERNAL, "internal error")
    return flight.items[0]


def _bounded(body: bytes, spec: ViewSpec, limit: int | None) -> bytes:
    """Cut a list view to the caller's ``limit`` (the cached view holds up to MAX_ROWS)."""
    if limit is None:
        return body
    view: Any = msgspec.json.decode(body, type=spec.model)
    if len(view.items) <= limit:
        return body
    cut = msgspec.structs.replace(view, items=view.items[:limit], truncated=True)
    return _encoder.encode(cut)


def _record(
    engine: DashboardEngine,
    principal: Principal,
    property_id: str,
    spec: ViewSpec,
    flight: Flight[bytes] | None,
    outcome: str,
    error: str | None,
    started: float,
) -> None:
    day: date | None = spec.day
    payload = d.WorkbenchOpened(
        operator_id=principal.operator_id,
        device_id=principal.device_id,
        property_id=property_id,
        role=principal.role,
        view=spec.view,
        date=day,
        outcome="stale" if outcome == "stale" else ("ok" if outcome == "ok" else "error"),
        partial=outcome != "ok",
        cached=flight is not None and flight.origin != "composed",
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        error_code=error,
    )
    engine.telemetry.record(
        WORKBENCH_OPENED,
        payload,
        tenant=principal.tenant,
        operator_id=principal.operator_id,
        device_id=principal.device_id,
        request_id=request_id() or None,
    )


def _within_reach(day: date | None) -> date | None:
    """A day within ``MAX_DAYS_AWAY`` of today: every distinct day is a cache entry (and an
    index entry), so the days a client may ask for are bounded."""
    if day is not None and abs((day - datetime.now(UTC).date()).days) > MAX_DAYS_AWAY:
        raise ApiError(
            Code.VALIDATION_FAILED, f"date: must be within {MAX_DAYS_AWAY} days of today"
        )
    return day
