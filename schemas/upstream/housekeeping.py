"""housekeeping-service: the task board and task transitions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from schemas.upstream.common import Wire

TaskStatus = Literal["pending", "assigned", "in_progress", "done", "inspected", "dnd"]
TaskKind = Literal["checkout_clean", "stayover_service", "deep_clean", "turndown", "inspection"]
Priority = Literal["low", "normal", "high", "urgent"]

# Allowed transitions of a task (what a real housekeeping service enforces).
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"assigned", "in_progress", "dnd"}),
    "assigned": frozenset({"pending", "in_progress", "dnd"}),
    "in_progress": frozenset({"done"}),
    "done": frozenset({"inspected", "pending"}),
    "dnd": frozenset({"pending"}),
    "inspected": frozenset(),
}


class HousekeepingTask(Wire):
    id: str
    property_id: str
    room_id: str
    room_number: str
    date: date
    kind: TaskKind
    status: TaskStatus
    priority: Priority
    assignee_id: str | None
    assignee_name: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class TaskList(Wire):
    property_id: str
    date: date
    items: list[HousekeepingTask]
    total: int


class TaskTransition(Wire):
    to: TaskStatus
    operator_id: str
    assignee_id: str | None = None
    note: str | None = None
