"""Simulated notification-service: the alert inbox and acknowledgements."""

from __future__ import annotations

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.notification import AcknowledgeRequest, Alert, AlertList

BASE = "/notification/v1/tenants/{tenantId}/properties/{propertyId}/alerts"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_alerts(sim, r))
    router.add("POST", BASE + "/{alertId}/acknowledge", lambda r: acknowledge(sim, r))


async def list_alerts(sim: Sim, request: Request) -> Response:
    """``?status=open|acknowledged|resolved|active|all`` (default ``active`` = not resolved)."""
    ps = sim.property(request)
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
