"""``GET /bff/backoffice/v1/dashboard``: the composed dashboard (API contract §5).

``Accept: application/x-ndjson`` streams it: the ``begin`` line goes out before anything else
is looked at (first byte), each widget line as soon as its upstream call is in (or, from the
cache, all at once), ``end`` last. Any other ``Accept`` gets the same content as one JSON
object. Either way a failed, late or drifting upstream greys out only its own widgets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import trio
from quart import Response, request

from edge.api import Api, Ndjson, decode_query, request_id
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.dashboard.catalogue import Plan, plan_for
from edge.dashboard.composer import WidgetResult, unavailable
from edge.dashboard.engine import DashboardEngine
from edge.dashboard.flight import Flight
from edge.dashboard.telemetry import DASHBOARD_VIEWED
from edge.errors import Code
from schemas.dashboard import (
    BeginLine,
    DashboardDocument,
    DashboardQuery,
    DashboardViewed,
    EndLine,
    WidgetLine,
)
from schemas.identifiers import Role

log = logging.getLogger("bff.dashboard")
api = Api()
NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"
_encoder = msgspec.json.Encoder()
# Besides the auth chain's codes (added to the OpenAPI document from ``auth=``):
ERRORS = (Code.SERVICE_UNAVAILABLE,)


class _Document(msgspec.Struct, rename="camel", kw_only=True):
    """``DashboardDocument`` with the widget lines spliced in already encoded."""

    property_id: str
    role: str
    generated_at: datetime
    partial: bool
    widgets: list[msgspec.Raw]


@dataclass
class _View:
    """One dashboard request: who, what, and what it got (for the telemetry event)."""

    principal: Principal
    property_id: str
    role: Role
    mode: str
    request_id: str | None
    started: float = field(default_factory=time.perf_counter)
    cached: bool = False
    completed: bool = False
    partial: bool = True
    seen: dict[str, bool] = field(default_factory=dict)  # widget id → ok


@api.route(
    "/bff/backoffice/v1/dashboard",
    summary="The composed dashboard of the caller's role (NDJSON stream or one JSON object)",
    tag="dashboard",
    query=DashboardQuery,
    response=DashboardDocument,
    ndjson=Ndjson(BeginLine, WidgetLine, EndLine),
    errors=ERRORS,
    auth="read",
)
async def dashboard(services: Services, *, principal: Principal) -> Response:
    query = decode_query(DashboardQuery)
    principal.require_property(query.property_id)
    engine = services.dashboard
    stream = NDJSON in request.headers.get("accept", "")
    view = _View(
        principal,
        query.property_id,
        principal.role,
        "stream" if stream else "json",
        request_id() or None,
    )
    if stream:
        response = Response(_lines(services, engine, view), content_type=NDJSON)
        response.timeout = None  # the composition's own deadline bounds it
        response.headers["Cache-Control"] = "no-store"
        return response
    try:
        body = await _document(services, engine, view)
    finally:
        _record(engine, view)
    return Response(body, content_type=JSON, headers={"Cache-Control": "no-store"})


def _guard_s(engine: DashboardEngine) -> float:
    """How long a request follows a flight at most (its own deadline, a peer's, slack)."""
    return engine.timing.dashboard_deadline_s + engine.lock_s + 0.5


async def _open(
    services: Services, engine: DashboardEngine, view: _View
) -> Flight[WidgetResult] | None:
    """The flight to follow; ``None`` if even that failed (a bug): every widget then shows as
    unavailable — the dashboard itself never fails once it is authorised."""
    try:
        flight = await engine.dashboard(view.principal.tenant, view.property_id, view.role)
    except Exception:
        log.exception("dashboard could not be opened", extra={"property": view.property_id})
        return None
    view.cached = flight.origin != "composed"
    return flight


async def _lines(services: Services, engine: DashboardEngine, view: _View) -> AsyncIterator[bytes]:
    """The NDJSON body. No ``yield`` sits inside a cancel scope (Trio forbids it in async
    generators): each wait is bounded on its own by the request's deadline."""
    plan = plan_for(view.role)
    deadline = trio.current_time() + _guard_s(engine)
    try:
        yield _begin(view, plan)
        flight: Flight[WidgetResult] | None = None
        with trio.move_on_at(deadline):
            flight = await _open(services, engine, view)
        cursor = 0
        while flight is not None:
            batch: list[WidgetResult] | None = None
            with trio.move_on_at(deadline):
                batch = await flight.next_items(cursor)
            if not batch:
                break
            cursor += len(batch)
            chunk = _take(view, plan, batch)
            if flight.finished and cursor == len(flight.items):
                yield chunk + _tail(view, plan, flight)
                return
            if chunk:
                yield chunk
        yield _tail(view, plan, flight)
    finally:
        _record(engine, view)


async def _document(services: Services, engine: DashboardEngine, view: _View) -> bytes:
    plan = plan_for(view.role)
    flight: Flight[WidgetResult] | None = None
    with trio.move_on_after(_guard_s(engine)):
        flight = await _open(services, engine, view)
        if flight is not None:
            await flight.wait()
    results = {r.id: r for r in (flight.items if flight is not None else [])}
    lines = []
    for widget in plan.widgets:  # catalogue order: a JSON reader wants a stable layout
        result = results.get(widget.id) or unavailable(widget)
        view.seen[widget.id] = result.ok
        lines.append(msgspec.Raw(result.line))
    view.partial = not all(view.seen.values()) or (flight is not None and flight.partial)
    view.completed = True
    stamp = flight.generated_at if flight is not None and flight.generated_at else time.time()
    return _encoder.encode(
        _Document(
            property_id=view.property_id,
            role=view.role,
            generated_at=datetime.fromtimestamp(stamp, UTC),
            partial=view.partial,
            widgets=lines,
        )
    )


def _begin(view: _View, plan: Plan) -> bytes:
    line = BeginLine(property_id=view.property_id, role=view.role, widgets=plan.widget_ids)
    return _encoder.encode(line) + b"\n"


def _take(view: _View, plan: Plan, batch: list[WidgetResult]) -> bytes:
    """The lines of ``batch`` not sent yet (each declared widget goes out exactly once)."""
    out = []
    for result in batch:
        if result.id in view.seen or result.id not in plan.ids:
            continue
        view.seen[result.id] = result.ok
        out.append(result.line + b"\n")
    return b"".join(out)


def _tail(view: _View, plan: Plan, flight: Flight[WidgetResult] | None) -> bytes:
    """Widgets the flight never delivered (request deadline) as unavailable, then ``end``."""
    missing = [unavailable(w) for w in plan.widgets if w.id not in view.seen]
    chunk = _take(view, plan, missing)
    view.partial = bool(missing) or not all(view.seen.values())
    if flight is not None:
        view.partial = view.partial or flight.partial
    view.completed = True
    return chunk + _encoder.encode(EndLine(partial=view.partial)) + b"\n"


def _record(engine: DashboardEngine, view: _View) -> None:
    p = view.principal
    payload = DashboardViewed(
        operator_id=p.operator_id,
        device_id=p.device_id,
        property_id=view.property_id,
        role=view.role,
        mode="stream" if view.mode == "stream" else "json",
        partial=view.partial,
        cached=view.cached,
        completed=view.completed,
        duration_ms=round((time.perf_counter() - view.started) * 1000, 2),
        widgets=len(view.seen),
        unavailable=sorted(i for i, ok in view.seen.items() if not ok),
    )
    engine.telemetry.record(
        DASHBOARD_VIEWED,
        payload,
        tenant=p.tenant,
        operator_id=p.operator_id,
        device_id=p.device_id,
        request_id=view.request_id,
    )
