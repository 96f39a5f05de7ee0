"""Starting the dashboard engine inside the service process (called from ``edge/system.py``,
after the ledger, before the actor runtime: PropertyActors are built with the engine)."""

from __future__ import annotations

import trio

from edge.dashboard.engine import DashboardEngine, Timing
from edge.services import Services


async def start_dashboard(nursery: trio.Nursery, services: Services) -> DashboardEngine:
    """Start the engine's nursery (flights, telemetry writer); publish ``services.dashboard``."""
    if services.upstreams is None:
        raise RuntimeError("the dashboard needs the upstream clients (services.upstreams)")
    engine = DashboardEngine(
        services.upstreams,
        services.cache,
        services.metrics,
        Timing.from_settings(services.settings),
    )
    await nursery.start(engine.run, services.ledger)
    services.dashboard = engine
    return engine
