"""Simulator control (never exposed by the BFF): faults, events, recorded calls, reset, iam
administration (key rotation, revocation, disabling operators) and scenario helpers."""

from __future__ import annotations

import random
import re
from typing import Annotated, Any, Literal

import msgspec

from ops.sim.context import Sim, not_found
from ops.sim.faults import FaultSpec
from ops.sim.generate import ALERT_TEMPLATES, SUGGESTION_TEMPLATES, make_suggestion
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.identity import Session
from ops.sim.services import ai, iam, maintenance, notification
from ops.sim.world import PropertyState, utc_now
from schemas.upstream.maintenance import WorkOrderCreate
from schemas.upstream.notification import Alert
from schemas.upstream.tenant import Operator

SUBJECT = re.compile(r"^melmastoon\.[a-z0-9_]+(\.[a-z0-9_]+)*\.v[0-9]+$")


class EventRequest(msgspec.Struct, kw_only=True):
    subject: Annotated[str, msgspec.Meta(max_length=200)]
    data: dict[str, Any]


class RotateRequest(msgspec.Struct, rename="camel", kw_only=True):
    retain_previous: bool = True


class RevokeBody(msgspec.Struct, kw_only=True):
    reason: str = "admin"


class ScenarioRequest(msgspec.Struct, rename="camel", kw_only=True):
    kind: Literal["alert", "aiSuggestion", "workOrder"]
    tenant_id: str
    property_id: str
    id: str | None = None  # for /_sim/resolve


class MetadataConfig(msgspec.Struct, rename="camel", kw_only=True):
    id_token_ttl_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]


def register(router: Router, sim: Sim) -> None:
    def add(method: str, path: str, handler: Any) -> None:
        router.add(method, path, handler, mutation=False)

    add("GET", "/health", lambda r: _ok({"status": "ok"}))
    add("POST", "/_sim/faults", lambda r: set_fault(sim, r))
    add("GET", "/_sim/faults", lambda r: _ok(sim.faults.all()))
    add("DELETE", "/_sim/faults", lambda r: clear_faults(sim, r))
    add("POST", "/_sim/events", lambda r: publish_event(sim, r))
    add("GET", "/_sim/events", lambda r: list_events(sim, r))
    add("GET", "/_sim/calls", lambda r: list_calls(sim, r))
    add("DELETE", "/_sim/calls", lambda r: clear_calls(sim))
    add("POST", "/_sim/reset", lambda r: reset(sim))
    add("GET", "/_sim/today", lambda r: today(sim))
    add("POST", "/_sim/iam/rotate-keys", lambda r: rotate_keys(sim, r))
    add("POST", "/_sim/iam/sessions/{sessionId}/token", lambda r: mint_token(sim, r))
    add("GET", "/_sim/iam/sessions", lambda r: _ok([s.info() for s in sim.iam.sessions.values()]))
    add("POST", "/_sim/iam/sessions/{sessionId}/revoke", lambda r: revoke_session(sim, r))
    add("POST", "/_sim/iam/operators/{username}/disable", lambda r: disable(sim, r))
    add("POST", "/_sim/iam/operators/{username}/enable", lambda r: enable(sim, r))
    add("POST", "/_sim/raise", lambda r: raise_item(sim, r))
    add("POST", "/_sim/resolve", lambda r: resolve_item(sim, r))
    add("PUT", "/_sim/metadata", lambda r: configure_metadata(sim, r))


async def _ok(payload: Any, status: int = 200) -> Response:
    return Response(status, payload)


async def set_fault(sim: Sim, request: Request) -> Response:
    spec: FaultSpec = request.decode(FaultSpec)
    try:
        sim.faults.set(spec)
    except ValueError as exc:
        raise HttpError(400, "VALIDATION_FAILED", str(exc)) from None
    return Response(200, spec)


async def clear_faults(sim: Sim, request: Request) -> Response:
    """Clear all faults (contract), or one service's with ``?service=``."""
    sim.faults.clear(request.query.get("service"))
    return Response(200, {"cleared": True})


async def publish_event(sim: Sim, request: Request) -> Response:
    body: EventRequest = request.decode(EventRequest)
    if not SUBJECT.match(body.subject):
        raise HttpError(400, "VALIDATION_FAILED", "subject: expected melmastoon.<...>.v<N>")
    try:
        event = sim.events.emit(body.subject, body.data)
    except ValueError as exc:
        raise HttpError(400, "VALIDATION_FAILED", str(exc)) from None
    return Response(202, {"eventId": event.event_id, "publish": event.publish})


async def list_events(sim: Sim, request: Request) -> Response:
    items = sim.events.recorded(request.query.get("subject", ""), request.query.get("tenant", ""))
    return Response(200, {"connected": sim.events.connected, "items": items})


async def list_calls(sim: Sim, request: Request) -> Response:
    kind = request.query.get("kind", "mutations")
    if kind not in ("mutations", "all"):
        raise HttpError(400, "VALIDATION_FAILED", "kind: mutations or all")
    items = sim.calls.list(request.query.get("service"), mutations_only=kind == "mutations")
    return Response(200, {"items": items})


async def clear_calls(sim: Sim) -> Response:
    sim.calls.clear()
    return Response(200, {"cleared": True})


async def reset(sim: Sim) -> Response:
    sim.reset()
    return Response(200, {"reset": True})


async def today(sim: Sim) -> Response:
    return Response(200, {p.id: p.today() for p in sim.world.properties.values()})


async def rotate_keys(sim: Sim, request: Request) -> Response:
    body: RotateRequest = request.decode(RotateRequest)
    kid = sim.iam.keys.rotate(retain_previous=body.retain_previous)
    return Response(200, {"kid": kid, "kids": [k.kid for k in sim.iam.keys.jwks().keys]})


class MintRequest(msgspec.Struct, kw_only=True):
    """An access token for a session, signed by iam's key, without the named claims (to test
    how a BFF treats tokens iam would never issue, such as one without ``cnf``)."""

    omit: list[Literal["cnf", "pids", "did", "sid", "tid", "role"]] = msgspec.field(
        default_factory=list
    )


async def mint_token(sim: Sim, request: Request) -> Response:
    session = sim.iam.sessions.get(request.params["sessionId"])
    if session is None:
        raise not_found("session")
    body: MintRequest = request.decode(MintRequest)
    claims = msgspec.to_builtins(sim.iam.access_claims(session, _operator_by_id(sim, session)))
    for name in body.omit:
        claims.pop(name, None)
    return Response(200, {"accessToken": sim.iam.keys.sign(claims, "at+jwt")})


def _operator_by_id(sim: Sim, session: Session) -> Operator:
    op = sim.world.operators.get(session.operator_id)
    if op is None:
        raise not_found("operator")
    return op


async def revoke_session(sim: Sim, request: Request) -> Response:
    session = sim.iam.sessions.get(request.params["sessionId"])
    if session is None:
        raise not_found("session")
    iam.revoke_session(sim, session, request.decode(RevokeBody).reason)
    return Response(200, session.info())


def _operator(sim: Sim, username: str) -> Operator:
    op = next((o for o in sim.world.operators.values() if o.username == username), None)
    if op is None:
        raise not_found("operator")
    return op


async def disable(sim: Sim, request: Request) -> Response:
    op = _operator(sim, request.params["username"])
    sim.dirty = True
    ended = iam.disable_operator(sim, op)
    return Response(200, {"operatorId": op.id, "status": op.status, "sessionIds": ended})


async def enable(sim: Sim, request: Request) -> Response:
    op = _operator(sim, request.params["username"])
    iam.enable_operator(sim, op)
    return Response(200, {"operatorId": op.id, "status": op.status})


def _scenario_property(sim: Sim, body: ScenarioRequest) -> PropertyState:
    ps = sim.world.properties.get(body.property_id)
    if ps is None or ps.tenant_id != body.tenant_id:
        raise not_found("property for this tenant")
    return ps


async def raise_item(sim: Sim, request: Request) -> Response:
    """Something new happens at a property: an alert, an AI suggestion or a work order."""
    body: ScenarioRequest = request.decode(ScenarioRequest)
    ps = _scenario_property(sim, body)
    sim.dirty = True
    rng = random.Random()
    if body.kind == "alert":
        alert_category, severity, title, message = rng.choice(ALERT_TEMPLATES)
        alert = Alert(
            id=ps.new_id("alr"),
            tenant_id=ps.tenant_id,
            property_id=ps.id,
            severity=severity,
            category=alert_category,
            title=title,
            message=message,
            status="open",
            source="notification",
            raised_at=utc_now(),
        )
        ps.alerts[alert.id] = alert
        notification.announce_raised(sim, ps, alert)
        return Response(201, alert)
    if body.kind == "aiSuggestion":
        category, title, rationale = rng.choice(SUGGESTION_TEMPLATES)
        s = make_suggestion(ps, ps.new_id("sug"), category, title, rationale, rng, utc_now())
        s.created_at = utc_now()
        ps.suggestions[s.id] = s
        ai.announce_created(sim, ps, s)
        return Response(201, s)
    room = rng.choice(list(ps.rooms.values()))
    order = WorkOrderCreate(
        title="Guest reported a fault",
        category="other",
        priority="high",
        operator_id="system",
        room_id=room.id,
    )
    return Response(201, maintenance.open_work_order(sim, ps, order))


async def resolve_item(sim: Sim, request: Request) -> Response:
    """An alert clears or a suggestion goes stale (alert.resolved / ai.suggestion.invalidated)."""
    body: ScenarioRequest = request.decode(ScenarioRequest)
    ps = _scenario_property(sim, body)
    sim.dirty = True
    if body.kind == "alert" and body.id in ps.alerts:
        alert = ps.alerts[body.id]
        notification.resolve(sim, ps, alert)
        return Response(200, alert)
    if body.kind == "aiSuggestion" and body.id in ps.suggestions:
        s = ps.suggestions[body.id]
        s.status = "invalidated"
        ai.invalidate(sim, ps, s, "stale")
        return Response(200, s)
    raise not_found(f"{body.kind} {body.id}")


async def configure_metadata(sim: Sim, request: Request) -> Response:
    body: MetadataConfig = request.decode(MetadataConfig)
    sim.id_token_ttl_s = body.id_token_ttl_s
    return Response(200, body)
