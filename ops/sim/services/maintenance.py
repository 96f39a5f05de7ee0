"""Simulated maintenance-service: work orders (open → … → closed); a room-blocking work order
takes its room out of order until it is resolved."""

from __future__ import annotations

from ops.sim.context import Sim, conflict, not_found
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.world import PropertyState, iso, utc_now
from schemas.upstream.maintenance import (
    WORK_ORDER_TRANSITIONS,
    WorkOrder,
    WorkOrderCreate,
    WorkOrderList,
    WorkOrderTransition,
)

BASE = "/maintenance/v1/tenants/{tenantId}/properties/{propertyId}/work-orders"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE, lambda r: list_orders(sim, r))
    router.add("POST", BASE, lambda r: create(sim, r))
    router.add("POST", BASE + "/{workOrderId}/transition", lambda r: transition(sim, r))


async def list_orders(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    status = request.query.get("status")
    items = [w for w in ps.work_orders.values() if status is None or w.status == status]
    return Response(200, WorkOrderList(property_id=ps.id, items=items, total=len(items)))


def open_work_order(sim: Sim, ps: PropertyState, body: WorkOrderCreate) -> WorkOrder:
    """Create a work order and announce ``melmastoon.maintenance.workorder.opened.v1``."""
    room = ps.rooms.get(body.room_id) if body.room_id else None
    if body.room_id and room is None:
        raise HttpError(400, "VALIDATION_FAILED", "roomId: no such room")
    now = utc_now()
    wo = WorkOrder(
        id=ps.new_id("wo"),
        property_id=ps.id,
        room_id=room.id if room else None,
        room_number=room.number if room else None,
        title=body.title,
        description=body.description,
        category=body.category,
        priority=body.priority,
        status="open",
        blocks_room=body.blocks_room and room is not None,
        assignee_id=None,
        reported_by=body.operator_id,
        created_at=now,
        updated_at=now,
    )
    ps.work_orders[wo.id] = wo
    if room is not None and wo.blocks_room:
        room.out_of_order = True
    sim.emit(
        "melmastoon.maintenance.workorder.opened.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "workOrderId": wo.id,
            "roomId": wo.room_id,
            "priority": wo.priority,
            "category": wo.category,
            "title": wo.title,
            "blocksRoom": wo.blocks_room,
            "occurredAt": iso(now),
        },
    )
    return wo


async def create(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    return Response(201, open_work_order(sim, ps, request.decode(WorkOrderCreate)))


async def transition(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    wo = ps.work_orders.get(request.params["workOrderId"])
    if wo is None:
        raise not_found("work order")
    body: WorkOrderTransition = request.decode(WorkOrderTransition)
    if body.to not in WORK_ORDER_TRANSITIONS[wo.status]:
        raise conflict(f"cannot go from {wo.status} to {body.to}", "INVALID_TRANSITION")
    if body.to == "assigned" and not body.assignee_id:
        raise HttpError(400, "VALIDATION_FAILED", "assigneeId: required to assign")
    previous, wo.status, wo.updated_at = wo.status, body.to, utc_now()
    if body.assignee_id:
        wo.assignee_id = body.assignee_id
    if wo.blocks_room and wo.room_id:
        ps.rooms[wo.room_id].out_of_order = wo.status not in ("resolved", "closed")
    sim.emit(
        "melmastoon.maintenance.workorder.status_changed.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "workOrderId": wo.id,
            "from": previous,
            "to": wo.status,
            "operatorId": body.operator_id,
            "occurredAt": iso(wo.updated_at),
        },
    )
    return Response(200, wo)
