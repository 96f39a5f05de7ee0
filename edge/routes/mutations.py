"""The domain mutations of API contract §9: reservation check-in and check-out, folio charges
and refunds, housekeeping task and maintenance work-order transitions.

Each is proxied to its domain service with the desktop's ``Idempotency-Key`` (required), and
answered with the resulting resource. ``edge/mutations/proxy.py`` does the rest the same way for
all: the idempotency layer, the audit through the DeviceActor (stream of the target:
``reservation:<id>``, ``folio:<id>``, ``housekeeping-task:<id>``, ``work-order:<id>``; the
operator's ``activity:<operatorId>``), then the PropertyActor voids the views the change made
stale and hints the property's desktops (``dashboard.hint``), before the answer is sent — so the
next arrivals / in-house / board read shows it.

Deadlines are the upstreams' (DEPLOYMENT_TOPOLOGY §3): reservation 1500 ms with one retry under
the same key (504 UPSTREAM_TIMEOUT when it never answered), billing 600 ms, housekeeping and
maintenance 700 ms, each with one retry under the same key. A refund needs a step-up
attestation for ``folio.refund``; the currency of a charge or refund must be the folio's, which
is read first (a charge is never posted in the wrong currency).
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response

from edge.api import Api, decode_body
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.mutations.proxy import ERRORS, Mutation, fields_of, path_id, perform
from schemas import mutations as m
from schemas.upstream import billing, housekeeping, maintenance
from schemas.upstream import reservation as rsv

api = Api()
BASE = "/bff/backoffice/v1"
CHECKED_IN = "melmastoon.reservation.checked_in.v1"
CHECKED_OUT = "melmastoon.reservation.checked_out.v1"
FOLIO_CHARGED = "melmastoon.billing.folio.charged.v1"
FOLIO_REFUNDED = "melmastoon.billing.folio.refunded.v1"
TASK_TRANSITIONED = "melmastoon.housekeeping.task.transitioned.v1"
WORK_ORDER_TRANSITIONED = "melmastoon.maintenance.workorder.transitioned.v1"


def _as_is(resource: msgspec.Struct) -> tuple[msgspec.Struct, dict[str, Any] | None]:
    """The resource is the answer; the audit keeps its status (the rest is the upstream's)."""
    status = getattr(resource, "status", None)
    return resource, None if status is None else {"status": status}


# --- reservations --------------------------------------------------------------------------


@api.route(
    f"{BASE}/reservations/{{reservationId}}/check-in",
    "POST",
    summary="Check a reservation in (reservation-service, 1500 ms, one retry with the same key); "
    "the next arrivals / in-house read shows it",
    tag="mutations",
    body=m.CheckInBody,
    response=m.ReservationResult,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def check_in(services: Services, *, principal: Principal, reservationId: str) -> Response:
    rid = path_id("reservationId", reservationId)
    body = await decode_body(m.CheckInBody)
    request = rsv.CheckInRequest(operator_id=principal.operator_id, room_id=body.room_id)

    async def call(key: str | None) -> rsv.Reservation:
        return await services.upstreams.reservation.check_in(
            principal.tenant, body.property_id, rid, request, key
        )

    mutation = Mutation(
        action="reservation.check_in",
        target=f"reservation:{rid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=CHECKED_IN,
    )
    return await perform(services, principal, mutation, call, _as_is)


@api.route(
    f"{BASE}/reservations/{{reservationId}}/check-out",
    "POST",
    summary="Check a reservation out (reservation-service, 1500 ms, one retry with the same key)",
    tag="mutations",
    body=m.CheckOutBody,
    response=m.ReservationResult,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def check_out(services: Services, *, principal: Principal, reservationId: str) -> Response:
    rid = path_id("reservationId", reservationId)
    body = await decode_body(m.CheckOutBody)
    request = rsv.CheckOutRequest(operator_id=principal.operator_id)

    async def call(key: str | None) -> rsv.Reservation:
        return await services.upstreams.reservation.check_out(
            principal.tenant, body.property_id, rid, request, key
        )

    mutation = Mutation(
        action="reservation.check_out",
        target=f"reservation:{rid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=CHECKED_OUT,
    )
    return await perform(services, principal, mutation, call, _as_is)


# --- folios --------------------------------------------------------------------------------


async def _same_currency(
    services: Services, tenant: str, property_id: str, folio_id: str, currency: str
) -> None:
    folio = await services.upstreams.billing.folio(tenant, property_id, folio_id)
    if folio.currency != currency:
        raise ApiError(
            Code.VALIDATION_FAILED, f"currency: folio {folio_id} is kept in {folio.currency}"
        )


def _folio(folio: billing.Folio) -> tuple[msgspec.Struct, dict[str, Any]]:
    return folio, {"balanceMinor": folio.balance_minor, "lines": len(folio.lines)}


@api.route(
    f"{BASE}/folios/{{folioId}}/charges",
    "POST",
    summary="Post a charge to a folio in the folio's currency (billing-service, 600 ms, one "
    "retry with the same key); answers the folio",
    tag="mutations",
    body=m.ChargeBody,
    response=m.FolioResult,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def charge(services: Services, *, principal: Principal, folioId: str) -> Response:
    fid = path_id("folioId", folioId)
    body = await decode_body(m.ChargeBody)
    request = billing.ChargeRequest(
        code=body.code,
        description=body.description,
        amount_minor=body.amount_minor,
        operator_id=principal.operator_id,
    )

    async def call(key: str | None) -> billing.Folio:
        await _same_currency(services, principal.tenant, body.property_id, fid, body.currency)
        return await services.upstreams.billing.charge(
            principal.tenant, body.property_id, fid, request, key
        )

    mutation = Mutation(
        action="folio.charge",
        target=f"folio:{fid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=FOLIO_CHARGED,
    )
    return await perform(services, principal, mutation, call, _folio)


@api.route(
    f"{BASE}/folios/{{folioId}}/refunds",
    "POST",
    summary="Refund to a folio (step-up MFA `folio.refund`; billing-service, 600 ms, one retry "
    "with the same key); answers the folio. Refusals are audited too",
    tag="mutations",
    body=m.RefundBody,
    response=m.FolioResult,
    auth="mutation",
    idempotency="required",
    mfa=True,
    errors=ERRORS,
)
async def refund(services: Services, *, principal: Principal, folioId: str) -> Response:
    fid = path_id("folioId", folioId)
    body = await decode_body(m.RefundBody)
    request = billing.RefundRequest(
        amount_minor=body.amount_minor, reason=body.reason, operator_id=principal.operator_id
    )

    async def call(key: str | None) -> billing.Folio:
        await _same_currency(services, principal.tenant, body.property_id, fid, body.currency)
        return await services.upstreams.billing.refund(
            principal.tenant, body.property_id, fid, request, key
        )

    mutation = Mutation(
        action="folio.refund",
        target=f"folio:{fid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=FOLIO_REFUNDED,
        mfa="folio.refund",
        audit_refusals=True,
    )
    return await perform(services, principal, mutation, call, _folio)


# --- boards --------------------------------------------------------------------------------


@api.route(
    f"{BASE}/housekeeping/tasks/{{taskId}}/transition",
    "POST",
    summary="Move a housekeeping task to another status (housekeeping-service, 700 ms, one "
    "retry with the same key); answers the task",
    tag="mutations",
    body=m.TaskTransitionBody,
    response=m.TaskResult,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def task_transition(services: Services, *, principal: Principal, taskId: str) -> Response:
    tid = path_id("taskId", taskId)
    body = await decode_body(m.TaskTransitionBody)
    request = housekeeping.TaskTransition(
        to=body.to, operator_id=principal.operator_id, assignee_id=body.assignee_id, note=body.note
    )

    async def call(key: str | None) -> housekeeping.HousekeepingTask:
        return await services.upstreams.housekeeping.transition(
            principal.tenant, body.property_id, tid, request, key
        )

    mutation = Mutation(
        action="housekeeping.task_transition",
        target=f"housekeeping-task:{tid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=TASK_TRANSITIONED,
    )
    return await perform(services, principal, mutation, call, _as_is)


@api.route(
    f"{BASE}/maintenance/work-orders/{{workOrderId}}/transition",
    "POST",
    summary="Move a maintenance work order to another status (maintenance-service, 700 ms, one "
    "retry with the same key); answers the work order",
    tag="mutations",
    body=m.WorkOrderTransitionBody,
    response=m.WorkOrderResult,
    auth="mutation",
    idempotency="required",
    errors=ERRORS,
)
async def work_order_transition(
    services: Services, *, principal: Principal, workOrderId: str
) -> Response:
    wid = path_id("workOrderId", workOrderId)
    body = await decode_body(m.WorkOrderTransitionBody)
    request = maintenance.WorkOrderTransition(
        to=body.to, operator_id=principal.operator_id, assignee_id=body.assignee_id, note=body.note
    )

    async def call(key: str | None) -> maintenance.WorkOrder:
        return await services.upstreams.maintenance.transition(
            principal.tenant, body.property_id, wid, request, key
        )

    mutation = Mutation(
        action="maintenance.work_order_transition",
        target=f"work-order:{wid}",
        property_id=body.property_id,
        request=fields_of(body),
        stale=WORK_ORDER_TRANSITIONED,
    )
    return await perform(services, principal, mutation, call, _as_is)
