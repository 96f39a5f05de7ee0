"""Wire shapes of the dashboard stream (API contract §5), the workbench views, the refresh hints
and the view telemetry. camelCase on the wire, money in integer minor units.

The dashboard stream is NDJSON: one :class:`BeginLine`, one :class:`WidgetLine` per declared
widget (completion order), one :class:`EndLine`. ``WidgetLine.data`` is the widget's own Struct
(the ``*Data`` classes below, named after the widget) or ``null`` when the widget is unavailable.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from schemas.identifiers import Identifier, Role

WidgetStatus = Literal["ok", "unavailable"]
WorkbenchView = Literal[
    "today", "arrivals", "departures", "inHouse", "housekeepingBoard", "maintenanceBoard"
]
PropertyId = Identifier
Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
MAX_ROWS = 500  # a workbench list never carries more rows than this


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every shape here: camelCase, keyword-only."""


# --- queries ---------------------------------------------------------------------------------


class DashboardQuery(Wire):
    property_id: PropertyId


class PropertyQuery(Wire):
    property_id: PropertyId


class DayListQuery(Wire):
    """``date`` defaults to today in the property's time zone; ``limit`` bounds the rows."""

    property_id: PropertyId
    date: date | None = None
    limit: Limit = 200


class ListQuery(Wire):
    property_id: PropertyId
    limit: Limit = 200


# --- the dashboard stream --------------------------------------------------------------------


class BeginLine(Wire, kw_only=True):
    type: Literal["begin"] = "begin"
    property_id: str
    role: Role
    widgets: list[str]


class WidgetLine(Wire, kw_only=True):
    type: Literal["widget"] = "widget"
    id: str
    status: WidgetStatus
    source: str  # the upstream the widget is drawn from
    data: Any = None


class EndLine(Wire, kw_only=True):
    type: Literal["end"] = "end"
    partial: bool


class DashboardDocument(Wire):
    """``Accept: application/json``: the same content as the stream, in one object."""

    property_id: str
    role: Role
    generated_at: datetime
    partial: bool
    widgets: list[WidgetLine]


# --- widget data -----------------------------------------------------------------------------


class PropertyFactsData(Wire):
    name: str
    time_zone: str
    currency: str
    local_date: date
    room_count: int
    floors: int
    room_types: int
    check_in_time: str
    check_out_time: str


class RoomStatusData(Wire):
    total: int
    clean: int
    dirty: int
    inspected: int
    occupied: int
    vacant: int
    out_of_order: int


class RoomRow(Wire):
    number: str
    floor: int
    room_type: str


class RoomListData(Wire):
    count: int
    items: list[RoomRow]


class CountByType(Wire):
    room_type: str
    count: int


class ReadyRoomsData(Wire):
    total: int
    by_room_type: list[CountByType]


class ArrivalSummaryData(Wire):
    date: date | None
    expected: int
    checked_in: int
    pending: int
    vip: int


class DepartureSummaryData(Wire):
    date: date | None
    expected: int
    checked_out: int
    pending: int


class GuestRow(Wire):
    reservation_id: str
    confirmation_number: str
    guest_name: str
    vip: bool
    loyalty_tier: str
    room_type: str
    room_number: str | None
    arrival_date: date
    departure_date: date
    nights: int
    eta: str | None
    status: str


class GuestListData(Wire):
    date: date | None
    total: int
    items: list[GuestRow]


class SpecialRequestRow(Wire):
    reservation_id: str
    guest_name: str
    room_number: str | None
    requests: list[str]


class SpecialRequestsData(Wire):
    total: int
    items: list[SpecialRequestRow]


class InHouseSummaryData(Wire):
    rooms: int
    adults: int
    children: int
    vip: int
    departing_today: int


class OccupancyData(Wire):
    date: date
    occupancy_pct: float
    total_rooms: int
    sold: int
    available: int
    out_of_order: int


class RoomTypeAvailabilityRow(Wire):
    room_type: str
    total: int
    sold: int
    available: int
    out_of_order: int


class AvailabilityData(Wire):
    date: date
    items: list[RoomTypeAvailabilityRow]


class RateRow(Wire):
    room_type: str
    bar_minor: int
    floor_minor: int
    ceiling_minor: int
    closed_to_arrival: bool


class RatesData(Wire):
    date: date
    currency: str
    updated_at: datetime
    items: list[RateRow]


class HousekeepingProgressData(Wire):
    date: date
    total: int
    done: int
    in_progress: int
    pending: int
    dnd: int
    pct_complete: float


class TaskRow(Wire):
    task_id: str
    room_number: str
    kind: str
    status: str
    priority: str
    assignee_name: str | None


class TaskListData(Wire):
    total: int
    items: list[TaskRow]


class AssigneeRow(Wire):
    assignee: str
    open: int
    done: int


class AssigneeData(Wire):
    items: list[AssigneeRow]


class CountByKey(Wire):
    key: str
    count: int


class MaintenanceBacklogData(Wire):
    open: int
    blocking_rooms: int
    by_priority: list[CountByKey]
    by_category: list[CountByKey]


class WorkOrderRow(Wire):
    work_order_id: str
    title: str
    room_number: str | None
    category: str
    priority: str
    status: str
    blocks_room: bool
    created_at: datetime


class WorkOrderListData(Wire):
    total: int
    items: list[WorkOrderRow]


class FolioBalancesData(Wire):
    date: date
    currency: str
    open_folios: int
    total_balance_minor: int


class RevenueTodayData(Wire):
    date: date
    currency: str
    charges_today_minor: int
    payments_today_minor: int


class KpiHeadlineData(Wire):
    date: date
    currency: str
    occupancy_pct: float
    adr_minor: int
    revpar_minor: int
    rooms_sold: int
    rooms_available: int
    room_revenue_minor: int
    as_of: datetime


class KpiPointRow(Wire):
    date: date
    occupancy_pct: float
    adr_minor: int
    revpar_minor: int


class KpiTrendData(Wire):
    currency: str
    items: list[KpiPointRow]


class AlertRow(Wire):
    alert_id: str
    severity: str
    category: str
    title: str
    raised_at: datetime


class AlertsData(Wire):
    open: int
    critical: int
    warning: int
    info: int
    items: list[AlertRow]


class SuggestionRow(Wire):
    suggestion_id: str
    category: str
    title: str
    summary: str
    confidence: float
    impact_minor: int | None
    expires_at: datetime


class SuggestionsData(Wire):
    open: int
    items: list[SuggestionRow]


# --- workbench views -------------------------------------------------------------------------


class ArrivalCounts(Wire):
    expected: int
    checked_in: int
    pending: int
    vip: int


class DepartureCounts(Wire):
    expected: int
    checked_out: int
    pending: int


class InHouseCounts(Wire):
    rooms: int
    guests: int
    vip: int


class TodayView(Wire):
    """``/today``: the "today at a glance" panel (reservation-service only)."""

    property_id: str
    date: date | None
    arrivals: ArrivalCounts
    departures: DepartureCounts
    in_house: InHouseCounts
    next_arrivals: list[GuestRow]
    generated_at: datetime


class GuestListView(Wire):
    """``/arrivals``, ``/departures``, ``/in-house``: sorted, bounded guest lists."""

    property_id: str
    date: date | None
    total: int
    truncated: bool
    items: list[GuestRow]
    generated_at: datetime


class HousekeepingBoardView(Wire):
    """``stale: true`` when housekeeping-service is down and this is the last board it gave
    (at most ``BFF_WORKBENCH_STALE_MAX_S`` old, fetched at ``asOf``)."""

    property_id: str
    date: date
    total: int
    truncated: bool
    counts: list[CountByKey]
    items: list[TaskRow]
    generated_at: datetime
    as_of: datetime
    stale: bool = False


class MaintenanceBoardView(Wire):
    """Same staleness rule as the housekeeping board (maintenance-service down → last board)."""

    property_id: str
    total: int
    truncated: bool
    counts: list[CountByKey]
    items: list[WorkOrderRow]
    generated_at: datetime
    as_of: datetime
    stale: bool = False


# --- refresh hints and telemetry -------------------------------------------------------------


class DashboardHint(Wire):
    """Data of the SSE ``dashboard.hint`` event: these widgets/views of the property are stale."""

    property_id: str
    widgets: list[str]
    views: list[str]
    subject: str
    event_id: str
    at: datetime


class DashboardViewed(Wire):
    """Payload of ``melmastoon.bff.backoffice.dashboard.viewed.v1``."""

    operator_id: str
    device_id: str
    property_id: str
    role: Role
    mode: Literal["stream", "json"]
    partial: bool
    cached: bool
    completed: bool
    duration_ms: float
    widgets: int
    unavailable: list[str]


class WorkbenchOpened(Wire):
    """Payload of ``melmastoon.bff.backoffice.workbench.opened.v1``."""

    operator_id: str
    device_id: str
    property_id: str
    role: Role
    view: WorkbenchView
    date: date | None
    outcome: Literal["ok", "stale", "error"]
    partial: bool
    cached: bool
    duration_ms: float
    error_code: str | None = None
