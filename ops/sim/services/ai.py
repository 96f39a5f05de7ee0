"""Simulated ai-orchestrator-service: suggestions per property and operator decisions.

A decision closes the suggestion for everyone: ``melmastoon.ai.suggestion.invalidated.v1``.

A suggestion created by publishing ``melmastoon.ai.suggestion.created.v1`` through
``POST /_sim/events`` is ai-orchestrator's own, as in production: it is listed and can be
decided, and a published ``ai.suggestion.invalidated`` closes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.ai import (
    DecideRequest,
    Suggestion,
    SuggestionCategory,
    SuggestionList,
    SuggestionStatus,
)

BASE = "/ai/v1/tenants/{tenantId}/properties/{propertyId}/suggestions"
CREATED = "melmastoon.ai.suggestion.created.v1"
INVALIDATED = "melmastoon.ai.suggestion.invalidated.v1"
CATEGORIES: tuple[SuggestionCategory, ...] = (
    "pricing",
    "upsell",
    "housekeeping",
    "maintenance",
    "staffing",
    "guest_experience",
)
OUTCOME: dict[str, SuggestionStatus] = {
    "accept": "accepted",
    "reject": "rejected",
    "modify": "modified",
}


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_suggestions(sim, r))
    router.add("POST", BASE + "/{suggestionId}/decide", lambda r: decide(sim, r))


async def list_suggestions(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    adopt_published(sim, ps)
    category = request.query.get("category")
    status = request.query.get("status", "open")
    items = [
        s
        for s in ps.suggestions.values()
        if (category is None or s.category == category) and (status == "all" or s.status == status)
    ]
    return Response(200, SuggestionList(property_id=ps.id, items=items, total=len(items)))


def announce_created(sim: Sim, ps: PropertyState, s: Suggestion) -> None:
    sim.emit(
        "melmastoon.ai.suggestion.created.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "suggestionId": s.id,
            "category": s.category,
            "title": s.title,
            "confidence": s.confidence,
            "expiresAt": iso(s.expires_at),
            "occurredAt": iso(s.created_at),
        },
    )


def invalidate(sim: Sim, ps: PropertyState, s: Suggestion, reason: str) -> None:
    sim.emit(
        "melmastoon.ai.suggestion.invalidated.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "suggestionId": s.id,
            "reason": reason,
            "occurredAt": iso(utc_now()),
        },
    )


async def decide(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    adopt_published(sim, ps)
    s = ps.suggestions.get(request.params["suggestionId"])
    if s is None:
        raise not_found("suggestion")
    body: DecideRequest = request.decode(DecideRequest)
    if s.status != "open":
        raise conflict(f"suggestion is {s.status}")
    s.status, s.decided_by, s.decided_at = OUTCOME[body.decision], body.operator_id, utc_now()
    invalidate(sim, ps, s, f"decided:{s.status}")
    return Response(200, s)


def adopt_published(sim: Sim, ps: PropertyState) -> None:
    """Take in the suggestions created and invalidated through ``POST /_sim/events`` for this
    property (idempotent: what the world already holds is left alone). An unknown category is
    taken as ``upsell``."""
    for event in sim.events.recorded("melmastoon.ai.suggestion.", ps.tenant_id):
        data = event.data
        sid = data.get("suggestionId")
        if data.get("propertyId") != ps.id or not isinstance(sid, str):
            continue
        known = ps.suggestions.get(sid)
        if event.subject == CREATED and known is None:
            ps.suggestions[sid] = _published(ps, sid, data)
            sim.dirty = True
        elif event.subject == INVALIDATED and known is not None and known.status == "open":
            known.status = "invalidated"
            sim.dirty = True


def _published(ps: PropertyState, sid: str, data: dict[str, Any]) -> Suggestion:
    created = _moment(data.get("occurredAt")) or utc_now()
    category = data.get("category")
    title = str(data.get("title") or "Suggestion")
    return Suggestion(
        id=sid,
        tenant_id=ps.tenant_id,
        property_id=ps.id,
        category=category if category in CATEGORIES else "upsell",
        title=title,
        summary=f"{title}.",
        rationale="published through /_sim/events",
        confidence=_confidence(data.get("confidence")),
        impact_minor=None,
        status="open",
        created_at=created,
        expires_at=_moment(data.get("expiresAt")) or created + timedelta(hours=24),
    )


def _moment(value: object) -> datetime | None:
    """An ISO 8601 time as aware UTC (no offset means UTC); ``None`` when unreadable."""
    try:
        moment = datetime.fromisoformat(str(value)) if value is not None else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _confidence(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(1.0, max(0.0, float(value)))
    return 0.5
