"""The background subsystems of one process, started in one nursery next to the HTTP server.

Each subsystem owns one section below and publishes what request handlers need on ``Services``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from edge.services import Services


@asynccontextmanager
async def run_system(services: Services) -> AsyncIterator[None]:
    """Start every subsystem; on exit (shutdown) cancel them all and wait for them to end."""
    async with trio.open_nursery() as nursery:
        # --- ledger, relay and subscriber: see ledger/ and edge/bus/ ---
        # --- actor system and admin server: see actors/ ---
        del nursery  # replaced by the subsystems' start calls
        yield
