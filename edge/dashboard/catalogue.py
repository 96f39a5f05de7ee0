"""The widget catalogue: every widget, the upstream call(s) it is drawn from, its deadline and
the roles that see it; and per role, the plan of one composition.

Upstream calls are :class:`Source` objects shared by identity: widgets naming the same source
share one request per composition (``arrivals.summary``, ``arrivals.upcoming``, ``arrivals.vip``
… are all drawn from one ``reservation.arrivals`` call). A widget draws from one upstream only,
so its line's ``source`` names exactly the service whose failure greys it out.
"""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import msgspec

from edge.dashboard import widgets as w
from edge.upstream.apis import Upstreams
from schemas.identifiers import Role
from schemas.upstream import UpstreamName

ROLES: tuple[Role, ...] = get_args(Role)
Fetch = Callable[[Upstreams, str, str], Awaitable[Any]]
Render = Callable[[Sequence[Any], Role], msgspec.Struct]

STANDARD_S = 0.45  # most widgets: every upstream's median is tens of ms
SLOW_S = 0.5  # AI suggestions and KPIs: slower upstreams, still inside the overall deadline


@dataclass(frozen=True, eq=False)
class Source:
    """One upstream read of a composition (``tenant``, ``property_id`` → answer)."""

    id: str
    upstream: UpstreamName
    fetch: Fetch


@dataclass(frozen=True, eq=False)
class Widget:
    id: str
    sources: tuple[Source, ...]
    roles: frozenset[Role]
    deadline_s: float
    render: Render
    data_type: type[msgspec.Struct]  # the shape of ``data`` when the widget is ok (OpenAPI)

    @property
    def upstream(self) -> UpstreamName:
        return self.sources[0].upstream


# --- upstream calls --------------------------------------------------------------------------

PROPERTY = Source("property.property", "property", lambda u, t, p: u.property.property(t, p))
ROOMS = Source("property.rooms", "property", lambda u, t, p: u.property.rooms(t, p))
ARRIVALS = Source(
    "reservation.arrivals", "reservation", lambda u, t, p: u.reservation.arrivals(t, p)
)
DEPARTURES = Source(
    "reservation.departures", "reservation", lambda u, t, p: u.reservation.departures(t, p)
)
IN_HOUSE = Source(
    "reservation.inHouse", "reservation", lambda u, t, p: u.reservation.in_house(t, p)
)
NO_SHOWS = Source(
    "reservation.noShows", "reservation", lambda u, t, p: u.reservation.no_shows(t, p)
)
AVAILABILITY = Source(
    "inventory.availability", "inventory", lambda u, t, p: u.inventory.availability(t, p)
)
RATES = Source("pricing.rates", "pricing", lambda u, t, p: u.pricing.rates(t, p))
TASKS = Source("housekeeping.tasks", "housekeeping", lambda u, t, p: u.housekeeping.tasks(t, p))
WORK_ORDERS = Source(
    "maintenance.workOrders", "maintenance", lambda u, t, p: u.maintenance.work_orders(t, p)
)
FOLIOS = Source("billing.summary", "billing", lambda u, t, p: u.billing.summary(t, p))
KPIS = Source("analytics.kpis", "analytics", lambda u, t, p: u.analytics.kpis(t, p))
ALERTS = Source(
    "notification.alerts", "notification", lambda u, t, p: u.notification.alerts(t, p, "open")
)
SUGGESTIONS = Source("ai.suggestions", "ai", lambda u, t, p: u.ai.suggestions(t, p, status="open"))


# --- widgets ---------------------------------------------------------------------------------

FD, HK, MT, FNB, GM = "front_desk", "housekeeping", "maintenance", "fnb_manager", "gm"


def _widget(
    widget_id: str,
    source: Source,
    roles: str,
    render: Callable[[Any], msgspec.Struct],
    deadline_s: float = STANDARD_S,
) -> Widget:
    """A single-source widget whose render does not depend on the role."""
    return Widget(
        widget_id,
        (source,),
        frozenset(roles.split()),  # type: ignore[arg-type]
        deadline_s,
        lambda values, role: render(values[0]),
        _returns(render),
    )


def _by_role(
    widget_id: str,
    source: Source,
    roles: str,
    render: Callable[[Any, str], msgspec.Struct],
    deadline_s: float = STANDARD_S,
) -> Widget:
    return Widget(
        widget_id,
        (source,),
        frozenset(roles.split()),  # type: ignore[arg-type]
        deadline_s,
        lambda values, role: render(values[0], role),
        _returns(render),
    )


def _returns(render: Callable[..., msgspec.Struct]) -> type[msgspec.Struct]:
    data_type: type[msgspec.Struct] = typing.get_type_hints(render)["return"]
    return data_type


ALL = f"{FD} {HK} {MT} {FNB} {GM}"
CATALOGUE: tuple[Widget, ...] = (
    _widget("property.facts", PROPERTY, ALL, w.property_facts),
    _widget("rooms.status", ROOMS, f"{FD} {HK} {GM}", w.room_status),
    _widget("rooms.outOfOrder", ROOMS, f"{FD} {HK} {MT} {GM}", w.out_of_order_rooms),
    _widget("rooms.ready", ROOMS, f"{FD} {HK}", w.ready_rooms),
    _widget("arrivals.summary", ARRIVALS, f"{FD} {HK} {GM}", w.arrival_summary),
    _widget("arrivals.upcoming", ARRIVALS, FD, w.upcoming_arrivals),
    _widget("arrivals.vip", ARRIVALS, f"{FD} {FNB} {GM}", w.vip_guests),
    _widget("arrivals.unassigned", ARRIVALS, FD, w.unassigned_arrivals),
    _widget("arrivals.specialRequests", ARRIVALS, f"{FD} {HK}", w.special_requests),
    _widget("departures.summary", DEPARTURES, f"{FD} {HK} {GM}", w.departure_summary),
    _widget("departures.pending", DEPARTURES, FD, w.pending_departures),
    _widget("inHouse.summary", IN_HOUSE, f"{FD} {FNB} {GM}", w.in_house_summary),
    _widget("inHouse.vip", IN_HOUSE, f"{FD} {FNB} {GM}", w.in_house_vips),
    _widget("noShows.lastNight", NO_SHOWS, f"{FD} {GM}", w.no_shows),
    _widget("occupancy.tonight", AVAILABILITY, f"{FD} {FNB} {GM}", w.occupancy),
    _widget("availability.byRoomType", AVAILABILITY, f"{FD} {GM}", w.availability),
    _widget("rates.snapshot", RATES, f"{FD} {GM}", w.rates),
    _widget("housekeeping.progress", TASKS, f"{FD} {HK} {GM}", w.housekeeping_progress),
    _widget("housekeeping.priorityQueue", TASKS, HK, w.priority_queue),
    _widget("housekeeping.byAssignee", TASKS, f"{HK} {GM}", w.tasks_by_assignee),
    _widget("maintenance.backlog", WORK_ORDERS, f"{MT} {GM}", w.maintenance_backlog),
    _widget("maintenance.roomBlocking", WORK_ORDERS, f"{FD} {HK} {MT}", w.room_blocking_orders),
    _widget("maintenance.urgent", WORK_ORDERS, MT, w.urgent_orders),
    _widget("folios.balances", FOLIOS, f"{FD} {GM}", w.folio_balances),
    _widget("revenue.today", FOLIOS, f"{FNB} {GM}", w.revenue_today),
    _widget("kpi.headline", KPIS, f"{FNB} {GM}", w.kpi_headline, SLOW_S),
    _widget("kpi.trend", KPIS, GM, w.kpi_trend, SLOW_S),
    _by_role("alerts.open", ALERTS, ALL, w.open_alerts),
    _by_role("ai.suggestions", SUGGESTIONS, ALL, w.suggestions, SLOW_S),
)
BY_ID = {widget.id: widget for widget in CATALOGUE}


@dataclass(frozen=True)
class Plan:
    """What one composition for one role does: its widgets (catalogue order) and the distinct
    upstream calls they need, each made once."""

    role: Role
    widgets: tuple[Widget, ...]
    sources: tuple[Source, ...]
    fingerprint: str  # changes when the role's widget set changes (stale cache entries miss)
    ids: frozenset[str]

    @property
    def widget_ids(self) -> list[str]:
        return [widget.id for widget in self.widgets]


def _plan(role: Role) -> Plan:
    chosen = tuple(widget for widget in CATALOGUE if role in widget.roles)
    sources: dict[int, Source] = {}
    for widget in chosen:
        for source in widget.sources:
            sources.setdefault(id(source), source)
    ids = ",".join(widget.id for widget in chosen)
    fingerprint = hashlib.sha256(ids.encode()).hexdigest()[:12]
    return Plan(role, chosen, tuple(sources.values()), fingerprint, frozenset(ids.split(",")))


PLANS: dict[Role, Plan] = {role: _plan(role) for role in ROLES}


def plan_for(role: Role) -> Plan:
    return PLANS[role]


def widgets_for_upstreams(upstreams: frozenset[str]) -> list[str]:
    """Ids of the widgets drawn from any of ``upstreams`` (catalogue order)."""
    return [widget.id for widget in CATALOGUE if widget.upstream in upstreams]


def roles_for_upstreams(upstreams: frozenset[str]) -> list[Role]:
    """Roles whose dashboard shows at least one widget drawn from ``upstreams``."""
    return [role for role in ROLES if any(w.upstream in upstreams for w in PLANS[role].widgets)]


def _check() -> None:
    ids = [widget.id for widget in CATALOGUE]
    assert len(ids) == len(set(ids)), "widget ids must be unique"
    for widget in CATALOGUE:
        assert len({s.upstream for s in widget.sources}) == 1, f"{widget.id}: one upstream"


_check()
