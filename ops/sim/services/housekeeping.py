"""Simulated housekeeping-service: the day's task board and task transitions.

Transitions follow ``TASK_TRANSITIONS``; finishing a task cleans the room (``done`` → clean,
``inspected`` → inspected), reopening it makes the room dirty again.
"""

from __future__ import annotations

from ops.sim.context import Sim, conflict, date_param, not_found
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.world import iso, utc_now
from schemas.upstream.housekeeping import TASK_TRANSITIONS, TaskList, TaskTransition

BASE = "/housekeeping/v1/tenants/{tenantId}/properties/{propertyId}"


def register(router: Router, sim: Sim) -> None:
    router.add("GET", BASE + "/tasks", lambda r: tasks(sim, r))
    router.add("POST", BASE + "/tasks/{taskId}/transition", lambda r: transition(sim, r))


async def tasks(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    day = date_param(request, ps)
    status = request.query.get("status")
    items = [
        t for t in ps.tasks.values() if t.date == day and (status is None or t.status == status)
    ]
    return Response(200, TaskList(property_id=ps.id, date=day, items=items, total=len(items)))


async def transition(sim: Sim, request: Request) -> Response:
    ps = sim.property(request)
    task = ps.tasks.get(request.params["taskId"])
    if task is None:
        raise not_found("task")
    body: TaskTransition = request.decode(TaskTransition)
    if body.to not in TASK_TRANSITIONS[task.status]:
        raise conflict(f"cannot go from {task.status} to {body.to}", "INVALID_TRANSITION")
    if body.to == "assigned":
        staff = next((s for s in ps.staff if s.id == body.assignee_id), None)
        if staff is None:
            raise HttpError(400, "VALIDATION_FAILED", "assigneeId: no such staff member")
        task.assignee_id, task.assignee_name = staff.id, staff.name
    elif body.to == "pending":
        task.assignee_id = task.assignee_name = None
    previous, task.status, task.updated_at = task.status, body.to, utc_now()
    if body.note:
        task.notes = body.note
    room = ps.rooms[task.room_id]
    if task.kind in ("checkout_clean", "stayover_service", "deep_clean"):
        if body.to == "done":
            room.housekeeping_status = "clean"
        elif body.to == "inspected":
            room.housekeeping_status = "inspected"
        elif body.to == "pending":
            room.housekeeping_status = "dirty"
    sim.emit(
        "melmastoon.housekeeping.task.status_changed.v1",
        {
            "tenantId": ps.tenant_id,
            "propertyId": ps.id,
            "taskId": task.id,
            "roomId": room.id,
            "from": previous,
            "to": task.status,
            "operatorId": body.operator_id,
            "occurredAt": iso(task.updated_at),
        },
    )
    return Response(200, task)
