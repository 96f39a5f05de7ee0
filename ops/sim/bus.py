"""Where the simulator's domain events go: the BFF's own bus adapters (``edge.bus``) through the
``Publisher`` port, so events land exactly where the BFF consumes them (Pub/Sub emulator when
``PUBSUB_EMULATOR_HOST`` is set, else the embedded Redis-Streams bus under
``<BFF_REDIS_PREFIX>:_bus:<topic>``; the same env variables as the BFF's). ``SIM_BUS=record``
keeps events in memory only (``GET /_sim/events`` shows them either way).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edge.bus import open_publisher
from edge.bus.port import Publisher
from edge.settings import load_settings
from ops.sim.config import SimConfig

log = logging.getLogger("sim.bus")


@asynccontextmanager
async def open_sim_publisher(config: SimConfig) -> AsyncIterator[Publisher | None]:
    """Must run inside ``trio_asyncio.open_loop()`` (the embedded bus uses redis-py)."""
    if config.bus == "record":
        yield None
        return
    settings = load_settings()
    async with open_publisher(settings) as publisher:
        log.info("publishing domain events", extra={"bus": settings.bus_kind})
        yield publisher
