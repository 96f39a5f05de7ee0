"""Simulated ai-orchestrator-service: suggestions per property and operator decisions.

A decision closes the suggestion for everyone: ``melmastoon.ai.suggestion.invalidated.v1``.
"""

from __future__ import annotations

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.ai import DecideRequest, Suggestion, SuggestionList, SuggestionStatus

BASE = "/ai/v1/tenants/{tenantId}/properties/{propertyId}/suggestions"
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
    s = ps.suggestions.get(request.params["suggestionId"])
    if s is None:
        raise not_found("suggestion")
    body: DecideRequest = request.decode(DecideRequest)
    if s.status != "open":
        raise conflict(f"suggestion is {s.status}")
    s.status, s.decided_by, s.decided_at = OUTCOME[body.decision], body.operator_id, utc_now()
    invalidate(sim, ps, s, f"decided:{s.status}")
    return Response(200, s)
