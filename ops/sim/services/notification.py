"""Simulated notification-service: the alert inbox and acknowledgements.

An alert raised by publishing ``melmastoon.alert.raised.v1`` through ``POST /_sim/events`` is
notification-service's own, as in production (it is the service that raises alerts): it shows
in the list and can be acknowledged, and a published ``alert.resolved`` resolves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.notification import (
    AcknowledgeRequest,
    Alert,
    AlertCategory,
    AlertList,
    Severity,
)

RAISED = "melmastoon.alert.raised.v1"
RESOLVED = "melmastoon.alert.resolved.v1"
SEVERITIES: dict[str, Severity] = {
    "info": "info",
    "low": "info",
    "warning": "warning",
    "medium": "warning",
    "high": "critical",
    "critical": "critical",
}
CATEGORIES: tuple[AlertCategory, ...] = (
    "overbooking",
    "payment",
    "maintenance",
    "housekeeping",
    "guest",
    "security",
    "system",
)

BASE = "/notification/v1/tenants/{tenantId}/properties/{propertyId}/alerts"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_alerts(sim, r))
    router.add("POST", BASE + "/{alertId}/acknowledge", lambda r: acknowledge(sim, r))


async def list_alerts(sim: Sim, request: Request) -> Response:
    """``?status=open|acknowledged|resolved|active|all`` (default ``active`` = not resolved)."""
    ps = sim.property(request)
    adopt_published(sim, ps)
    status = request.query.get("status", "active")
    items = [
        a
        for a in ps.alerts.values()
        if status == "all" or a.status == status or (status == "active" and a.status != "resolved")
    ]
    items.sort(key=lambda a: a.raised_at, reverse=True)
    return Response(200, AlertList(property_id=ps.id, items=items, total=len(items)))


def announce_raised(sim: Sim, ps: PropertyState, alert: Alert) -> None:
    sim.emit(
        "melmastoon.alert.raised.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "alertId": alert.id,
            "severity": alert.severity,
            "category": alert.category,
            "title": alert.title,
            "occurredAt": iso(alert.raised_at),
        },
    )


def resolve(sim: Sim, ps: PropertyState, alert: Alert) -> None:
    alert.status, alert.resolved_at = "resolved", utc_now()
    sim.emit(
        "melmastoon.alert.resolved.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "alertId": alert.id,
            "occurredAt": iso(alert.resolved_at),
        },
    )


async def acknowledge(sim: Sim, request: Request) -> Response:
    """Acknowledging twice is harmless (the first acknowledgement stays)."""
    ps = sim.property(request)
    adopt_published(sim, ps)
    alert = ps.alerts.get(request.params["alertId"])
    if alert is None:
        raise not_found("alert")
    body: AcknowledgeRequest = request.decode(AcknowledgeRequest)
    if alert.status == "resolved":
        raise conflict("alert is already resolved")
    if alert.status == "open":
        alert.status, alert.acknowledged_at = "acknowledged", utc_now()
        alert.acknowledged_by = body.operator_id
    return Response(200, alert)


def adopt_published(sim: Sim, ps: PropertyState) -> None:
    """Take in the alerts raised and resolved through ``POST /_sim/events`` for this property
    (idempotent: what the world already holds is left alone). Unknown severities and categories
    are mapped onto the service's own (``high`` → ``critical``, other → ``system``)."""
    for event in sim.events.recorded("melmastoon.alert.", ps.tenant_id):
        data = event.data
        if data.get("propertyId") != ps.id or not isinstance(data.get("alertId"), str):
            continue
        known = ps.alerts.get(data["alertId"])
        if event.subject == RAISED and known is None:
            ps.alerts[data["alertId"]] = _published_alert(ps, data)
            sim.dirty = True
        elif event.subject == RESOLVED and known is not None and known.status != "resolved":
            known.status, known.resolved_at = "resolved", utc_now()
            sim.dirty = True


def _published_alert(ps: PropertyState, data: dict[str, Any]) -> Alert:
    try:
        raised_at = datetime.fromisoformat(str(data["occurredAt"]))
    except (KeyError, ValueError):
        raised_at = utc_now()
    if raised_at.tzinfo is None:  # no offset means UTC (the list sorts by it)
        raised_at = raised_at.replace(tzinfo=UTC)
    category = data.get("category")
    title = str(data.get("title") or "Alert")
    return Alert(
        id=data["alertId"],
        tenant_id=ps.tenant_id,
        property_id=ps.id,
        severity=SEVERITIES.get(str(data.get("severity")), "warning"),
        category=category if category in CATEGORIES else "system",
        title=title,
        message=title,
        status="open",
        source="published",
        raised_at=raised_at,
    )
