"""The background subsystems of one process, started in one nursery next to the HTTP server.

Each subsystem owns one section below and publishes what request handlers need on ``Services``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from actors.runtime import start_actor_runtime
from edge.bus.wiring import start_ledger_and_bus
from edge.dashboard.wiring import start_dashboard
from edge.services import Services


@asynccontextmanager
async def run_system(services: Services) -> AsyncIterator[None]:
    """Start every subsystem; on exit (shutdown) cancel them all and wait for them to end."""
    async with trio.open_nursery() as nursery:
        # --- ledger, relay and subscriber: see ledger/ and edge/bus/ ---
        await start_ledger_and_bus(nursery, services)
        # --- dashboard engine (before the actors: PropertyActors compose through it) ---
        await start_dashboard(nursery, services)
        # --- actor system and admin server: see actors/ ---
        await start_actor_runtime(nursery, services)
        yield
        nursery.cancel_scope.cancel()
