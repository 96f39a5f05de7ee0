"""Which cached views a consumed domain event makes stale (pure; used by the PropertyActor).

A domain event changes what some upstreams answer: a reservation event moves arrivals,
departures and in-house lists, and with them occupancy, room status and folios; a new
housekeeping task changes the task board; a new work order the maintenance board and, when it
blocks a room, the room list. Every cached entry drawn from one of those upstreams is stale:
dashboards of the roles that show such a widget, and the workbench views built from them.

Cache names: ``dashboard:<role>`` and ``view:<view>[:<date>]``; a *family* is the name without
the date (the unit of generation bumps). Names this module does not know (older entries) are
treated as affected by every event, which is always safe.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.dashboard.catalogue import roles_for_upstreams, widgets_for_upstreams

# Subject prefix → upstreams whose answers the event changes (first match wins).
EFFECTS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "melmastoon.reservation.",
        frozenset({"reservation", "inventory", "billing", "property", "analytics"}),
    ),
    ("melmastoon.housekeeping.", frozenset({"housekeeping", "property"})),
    ("melmastoon.maintenance.", frozenset({"maintenance", "property", "inventory"})),
    ("melmastoon.billing.", frozenset({"billing"})),  # folio charges/refunds proxied here
    ("melmastoon.alert.", frozenset({"notification"})),
    ("melmastoon.ai.", frozenset({"ai"})),
)

# Workbench view → the upstream it is built from.
VIEW_UPSTREAMS: dict[str, str] = {
    "today": "reservation",
    "arrivals": "reservation",
    "departures": "reservation",
    "inHouse": "reservation",
    "housekeepingBoard": "housekeeping",
    "maintenanceBoard": "maintenance",
}


@dataclass(frozen=True)
class Affected:
    upstreams: frozenset[str]
    families: list[str]  # generation families to bump
    widgets: list[str]  # widget ids to hint (catalogue order)
    views: list[str]  # workbench views to hint

    def __bool__(self) -> bool:
        return bool(self.upstreams)


def dashboard_name(role: str) -> str:
    return f"dashboard:{role}"


def view_name(view: str, day: str | None = None) -> str:
    return f"view:{view}:{day}" if day else f"view:{view}"


def family_of(name: str) -> str | None:
    """``view:arrivals:2026-11-21`` → ``view:arrivals``; ``None`` for names not made here."""
    kind, _, rest = name.partition(":")
    if kind == "dashboard" and rest:
        return name
    if kind == "view" and rest.split(":")[0] in VIEW_UPSTREAMS:
        return f"view:{rest.split(':')[0]}"
    return None


def affected_by(subject: str) -> Affected:
    upstreams = next((u for prefix, u in EFFECTS if subject.startswith(prefix)), frozenset())
    if not upstreams:
        return Affected(frozenset(), [], [], [])
    views = [v for v, upstream in VIEW_UPSTREAMS.items() if upstream in upstreams]
    families = [dashboard_name(r) for r in roles_for_upstreams(upstreams)]
    families += [view_name(v) for v in views]
    return Affected(upstreams, families, widgets_for_upstreams(upstreams), views)


def is_affected(name: str, affected: Affected) -> bool:
    family = family_of(name)
    return family is None or family in affected.families
