"""The AI suggestion and alert inboxes (API contract §9): list and decide suggestions, list and
acknowledge alerts.

Lists are served from the Redis projections (``edge/inbox/projection.py``) the PropertyActor
keeps current from domain events, read through to the upstream when the projection cannot answer
alone. An upstream being down never fails a list: it is answered ``degraded: true`` from what the
BFF holds (FAILURE_MODES F-11 ai-orchestrator: "silent degrade"; F-12 notification-service:
"cache absorbs").

Mutations differ on purpose. A decision is ai-orchestrator's to accept (the suggestion may have
expired or been decided elsewhere), so it is proxied first — 800 ms, no retry — and only an
accepted one is recorded. An acknowledgement is the operator's fact: it is made durable first
(Postgres and the ledger, through the PropertyActor), then offered to notification-service once;
if that fails the forwarder (``edge/inbox/forwarder.py``) delivers it later, and the operator
still gets their 200.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from quart import Response

from actors.address import property_
from actors.errors import ActorError, SystemNotRunning
from actors.property import AcknowledgeAlert, DecideSuggestion, SuggestionRecorded
from edge.api import Api, decode_body, decode_query
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.decoding import Malformed, convert
from edge.errors import ApiError, Code, code_for_actor_error
from edge.idempotency import idempotent
from edge.inbox.forwarder import deliver
from edge.inbox.instruments import inbox_instruments
from edge.inbox.items import alert_from_upstream, live, merged, suggestion_from_upstream
from edge.inbox.projection import MAX_ITEMS
from edge.redis_tier import TierUnavailable
from ledger.alert_acks import DELIVERED
from ledger.database import DatabaseUnavailable
from schemas.identifiers import Identifier
from schemas.inbox import (
    AcknowledgeBody,
    Acknowledged,
    AlertAck,
    AlertItem,
    AlertList,
    AlertsQuery,
    DecideBody,
    Decided,
    RecordedAck,
    SuggestionItem,
    SuggestionList,
    SuggestionsQuery,
)
from schemas.upstream.ai import DecideRequest

R = TypeVar("R")
log = logging.getLogger("bff.routes.inbox")
api = Api()
BASE = "/bff/backoffice/v1"
JSON = "application/json; charset=utf-8"
INLINE_ACK_BUDGET_S = 1.0  # the one inline offer to notification-service (then the forwarder)
_encoder = msgspec.json.Encoder()
ACTOR_ERRORS = (Code.SERVICE_UNAVAILABLE, Code.OVERLOADED, Code.CACHE_UNAVAILABLE)


def _json(body: msgspec.Struct) -> Response:
    return Response(_encoder.encode(body), content_type=JSON, headers={"Cache-Control": "no-store"})


# --- AI suggestions ----------------------------------------------------------------------------


@api.route(
    f"{BASE}/ai/suggestions",
    summary="Open AI suggestions of a property (optionally one category), newest first. "
    "`degraded: true` when ai-orchestrator could not be asked: then only what the BFF holds",
    tag="inbox",
    query=SuggestionsQuery,
    response=SuggestionList,
    auth="read",
)
async def suggestions(services: Services, *, principal: Principal) -> Response:
    query = decode_query(SuggestionsQuery)
    principal.require_property(query.property_id)
    items, degraded = await _suggestions(services, principal.tenant, query.property_id)
    if query.category is not None:
        items = [item for item in items if item.category == query.category]
    return _json(SuggestionList(property_id=query.property_id, items=items, degraded=degraded))


async def _suggestions(
    services: Services, tenant: str, pid: str
) -> tuple[list[SuggestionItem], bool]:
    """(items, degraded): the projection once it is loaded; else ai-orchestrator's list, which
    then loads it; else (F-11) what events brought, flagged degraded."""
    reads = inbox_instruments(services.metrics).inbox_reads
    cache_up, loaded, held = True, False, list[SuggestionItem]()
    try:
        loaded, held = await services.inboxes.suggestions(tenant, pid)
    except TierUnavailable as exc:
        cache_up = False
        log.warning("suggestion inbox unreadable; reading through", extra={"error": str(exc)})
    if loaded:
        reads.labels("suggestions", "projection").inc()
        return held, False
    started = time.time()
    try:
        listed = await services.upstreams.ai.suggestions(tenant, pid)
    except ApiError as exc:
        reads.labels("suggestions", "degraded").inc()
        log.warning("ai-orchestrator unavailable; suggestions degraded", extra={"error": str(exc)})
        return held, True
    items = [s for s in map(suggestion_from_upstream, listed.items) if s is not None]
    if cache_up:
        try:
            await services.inboxes.fill_suggestions(tenant, pid, items, started)
        except TierUnavailable as exc:
            log.warning("suggestion inbox not filled", extra={"error": str(exc)})
    reads.labels("suggestions", "upstream").inc()
    return live(items, _now())[:MAX_ITEMS], False


@api.route(
    f"{BASE}/ai/suggestions/{{suggestionId}}/decide",
    "POST",
    summary="Accept, reject or modify a suggestion (`modification` only with `modify`). "
    "ai-orchestrator decides first (800 ms, no retry); only an accepted decision is recorded "
    "and taken out of every device's inbox",
    tag="inbox",
    body=DecideBody,
    response=Decided,
    auth="mutation",
    idempotency="accepted",
    errors=(
        Code.NOT_FOUND,
        Code.CONFLICT,
        Code.UPSTREAM_UNAVAILABLE,
        Code.UPSTREAM_TIMEOUT,
        Code.SCHEMA_DRIFT,
        *ACTOR_ERRORS,
    ),
)
async def decide(services: Services, *, principal: Principal, suggestionId: str) -> Response:
    suggestion_id = _path_id("suggestionId", suggestionId)
    body = await decode_body(DecideBody)
    principal.require_property(body.property_id)
    _check_modification(body)
    return await idempotent(
        services,
        principal,
        lambda key: _decide(services, principal, suggestion_id, body, key),
        required=False,
    )


async def _decide(
    services: Services, principal: Principal, suggestion_id: str, body: DecideBody, key: str | None
) -> Response:
    """ai-orchestrator first, with the key (a retry after a lost answer is a replay there);
    only an accepted decision reaches the PropertyActor."""
    answer = await services.upstreams.ai.decide(
        principal.tenant,
        body.property_id,
        suggestion_id,
        DecideRequest(
            decision=body.decision,
            operator_id=principal.operator_id,
            modifications=body.modification,
        ),
        key,
    )
    command = DecideSuggestion(
        suggestion_id=suggestion_id,
        decision=body.decision,
        operator_id=principal.operator_id,
        device_id=principal.device_id,
        modification=None if body.modification is None else dict(body.modification),
    )
    recorded = await _ask(
        services,
        principal.tenant,
        body.property_id,
        command,
        SuggestionRecorded,
        "ai-orchestrator took the decision but it was not recorded; "
        "retry with the same Idempotency-Key",
    )
    return _json(
        Decided(
            suggestion_id=recorded.suggestion_id,
            property_id=body.property_id,
            decision=body.decision,
            status=answer.status,
            decided_at=answer.decided_at,
        )
    )


def _check_modification(body: DecideBody) -> None:
    if body.decision == "modify" and body.modification is None:
        raise ApiError(Code.VALIDATION_FAILED, "modification: required when decision is modify")
    if body.decision != "modify" and body.modification is not None:
        raise ApiError(Code.VALIDATION_FAILED, "modification: only with decision modify")


# --- alerts ------------------------------------------------------------------------------------


@api.route(
    f"{BASE}/alerts",
    summary="Alerts of a property that are not resolved: `open`, `acknowledged` or `all` "
    "(default `open`), newest first. An acknowledgement shows at once, before "
    "notification-service has it. `degraded: true` when notification-service could not be "
    "asked: then served from the BFF's inbox",
    tag="inbox",
    query=AlertsQuery,
    response=AlertList,
    auth="read",
)
async def alerts(services: Services, *, principal: Principal) -> Response:
    query = decode_query(AlertsQuery)
    pid = query.property_id
    principal.require_property(pid)
    items, degraded = await _alerts(services, principal.tenant, pid)
    acks, acks_read = await _acks(services, principal.tenant, pid, [a.alert_id for a in items])
    chosen = merged(items, acks, query.filter)[:MAX_ITEMS]
    body = AlertList(
        property_id=pid, filter=query.filter, items=chosen, degraded=degraded or not acks_read
    )
    return _json(body)


async def _alerts(services: Services, tenant: str, pid: str) -> tuple[list[AlertItem], bool]:
    """(items, degraded): notification-service's list, which also refreshes the projection;
    while it is down (F-12), the projection."""
    reads = inbox_instruments(services.metrics).inbox_reads
    started = time.time()
    try:
        listed = await services.upstreams.notification.alerts(tenant, pid, status="active")
    except ApiError as exc:
        reads.labels("alerts", "degraded").inc()
        log.warning("notification-service unavailable; alerts degraded", extra={"error": str(exc)})
        try:
            return await services.inboxes.alerts(tenant, pid), True
        except TierUnavailable:
            return [], True
    items = [a for a in map(alert_from_upstream, listed.items) if a is not None]
    try:
        await services.inboxes.fill_alerts(tenant, pid, items, started)
    except TierUnavailable as exc:
        log.warning("alert inbox not refreshed", extra={"error": str(exc)})
    reads.labels("alerts", "upstream").inc()
    return items, False


async def _acks(
    services: Services, tenant: str, pid: str, alert_ids: list[str]
) -> tuple[dict[str, AlertAck], bool]:
    """(the BFF's acks of these alerts, whether they could be read)."""
    if not alert_ids:
        return {}, True
    try:
        return await services.alert_acks.acknowledged(tenant, pid, alert_ids), True
    except DatabaseUnavailable as exc:
        log.warning("acknowledgements unreadable; alerts degraded", extra={"error": str(exc)})
        return {}, False


@api.route(
    f"{BASE}/alerts/{{alertId}}/acknowledge",
    "POST",
    summary="Acknowledge an alert. Idempotent: the first acknowledgement stands and a repeat "
    "changes nothing (`changed: false`); a repeat with the same `Idempotency-Key` is answered "
    "the first response (`Idempotent-Replayed: true`). Recorded durably before "
    "notification-service is told; `forwarded: false` means it is not told yet and the BFF "
    "keeps delivering it",
    tag="inbox",
    body=AcknowledgeBody,
    response=Acknowledged,
    auth="mutation",
    idempotency="accepted",
    errors=(*ACTOR_ERRORS, Code.NOT_FOUND, Code.UPSTREAM_UNAVAILABLE),
)
async def acknowledge(services: Services, *, principal: Principal, alertId: str) -> Response:
    alert_id = _path_id("alertId", alertId)
    body = await decode_body(AcknowledgeBody)
    principal.require_property(body.property_id)
    return await idempotent(
        services,
        principal,
        lambda _key: _acknowledge(services, principal, body.property_id, alert_id),
        required=False,
    )


async def _acknowledge(
    services: Services, principal: Principal, property_id: str, alert_id: str
) -> Response:
    """The PropertyActor records the first ack; notification-service is offered it with a key
    of its own (derived from tenant and alert, ``edge/inbox/forwarder.py``), so the request's
    key is not forwarded: every offer of one ack is the same request there."""
    await _require_alert(services, principal.tenant, property_id, alert_id)
    command = AcknowledgeAlert(
        alert_id=alert_id, operator_id=principal.operator_id, device_id=principal.device_id
    )
    recorded = await _ask(
        services, principal.tenant, property_id, command, RecordedAck, "ack not recorded"
    )
    forwarded = recorded.forwarded or (recorded.created and await _forward_now(services, recorded))
    first = recorded.ack
    return _json(
        Acknowledged(
            alert_id=first.alert_id,
            property_id=first.property_id,
            acknowledged_at=first.at,
            acknowledged_by=first.operator_id,
            changed=recorded.created,
            forwarded=forwarded,
        )
    )


async def _require_alert(services: Services, tenant: str, pid: str, alert_id: str) -> None:
    """The alert is this property's (acks are keyed by tenant and alert: an operator of
    another property must not take an alert's one acknowledgement): acknowledged here already,
    in the property's inbox, or on notification-service's list for the property."""
    acks, _ = await _acks(services, tenant, pid, [alert_id])
    if alert_id in acks:
        return
    try:
        if any(a.alert_id == alert_id for a in await services.inboxes.alerts(tenant, pid)):
            return
    except TierUnavailable:
        pass
    items, degraded = await _alerts(services, tenant, pid)
    if any(a.alert_id == alert_id for a in items):
        return
    if degraded:
        raise ApiError(
            Code.UPSTREAM_UNAVAILABLE,
            "notification-service unavailable and the alert is not in this property's inbox; retry",
        )
    raise ApiError(Code.NOT_FOUND, "no open alert with this id at this property")


async def _forward_now(services: Services, recorded: RecordedAck) -> bool:
    """Offer the ack just recorded once; whatever happens, the forwarder has it otherwise."""
    ack = recorded.ack
    result = await deliver(services.upstreams.notification, ack, INLINE_ACK_BUDGET_S)
    forwards = inbox_instruments(services.metrics).ack_forwards
    if not result.done:
        forwards.labels("inline", "failed").inc()
        log.info(
            "acknowledgement left to the forwarder",
            extra={"alertId": ack.alert_id, "error": result.outcome[:200]},
        )
        return False
    delivered = result.outcome == DELIVERED
    forwards.labels("inline", "delivered" if delivered else "rejected").inc()
    try:
        await services.alert_acks.mark_forwarded(ack.tenant, ack.alert_id, result.outcome)
    except DatabaseUnavailable as exc:  # offered again later: a replay at notification-service
        log.warning("forward not marked", extra={"alertId": ack.alert_id, "error": str(exc)})
    return delivered


# --- helpers -----------------------------------------------------------------------------------


async def _ask(
    services: Services, tenant: str, pid: str, command: object, reply: type[R], failed: str
) -> R:
    """Ask the property's actor; its failure is the contract's error for it (503 …)."""
    try:
        answer = await services.actors.ask(property_(tenant, pid), command)
    except ActorError as exc:
        raise ApiError(code_for_actor_error(exc), f"{failed}; retry") from None
    except SystemNotRunning:
        raise ApiError(Code.SERVICE_UNAVAILABLE, f"{failed}; retry") from None
    if not isinstance(answer, reply):
        raise ApiError(Code.INTERNAL, f"unexpected reply {type(answer).__name__}")
    return answer


def _path_id(name: str, value: str) -> str:
    """A path parameter that becomes part of keys, streams and an upstream's URL: the one
    identifier alphabet, and not ``.``/``..`` (a dot segment would move the upstream path)."""
    try:
        checked: str = convert(value, Identifier, where=name)
    except Malformed as exc:
        raise ApiError(Code.VALIDATION_FAILED, f"{name}: {exc.detail}") from None
    if not checked.strip("."):
        raise ApiError(Code.VALIDATION_FAILED, f"{name}: not an identifier")
    return checked


def _now() -> datetime:
    return datetime.now(UTC)
