"""maintenance-service: work orders and their transitions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire

WorkOrderStatus = Literal["open", "assigned", "in_progress", "on_hold", "resolved", "closed"]
WorkOrderCategory = Literal["plumbing", "electrical", "hvac", "furniture", "it", "safety", "other"]
WorkOrderPriority = Literal["low", "medium", "high", "urgent"]

WORK_ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"assigned", "in_progress", "closed"}),
    "assigned": frozenset({"open", "in_progress", "on_hold"}),
    "in_progress": frozenset({"on_hold", "resolved"}),
    "on_hold": frozenset({"in_progress"}),
    "resolved": frozenset({"closed", "in_progress"}),
    "closed": frozenset(),
}


class WorkOrder(Wire):
    id: str
    property_id: str
    room_id: str | None
    room_number: str | None
    title: str
    description: str
    category: WorkOrderCategory
    priority: WorkOrderPriority
    status: WorkOrderStatus
    blocks_room: bool
    assignee_id: str | None
    reported_by: str
    created_at: datetime
    updated_at: datetime


class WorkOrderList(Wire):
    property_id: str
    items: list[WorkOrder]
    total: int


class WorkOrderCreate(Wire):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    category: WorkOrderCategory
    priority: WorkOrderPriority
    operator_id: str
    room_id: str | None = None
    description: str = ""
    blocks_room: bool = False


class WorkOrderTransition(Wire):
    to: WorkOrderStatus
    operator_id: str
    assignee_id: str | None = None
    note: str | None = None
