"""Upstream clients wired to a test simulator (in-process, under pytest-trio)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edge.metrics import Metrics
from edge.settings import load_settings
from edge.upstream.apis import Upstreams
from edge.upstream.factory import open_upstreams
from tests.support.sim import SimHandle


@asynccontextmanager
async def clients_for(sim: SimHandle, **env: str) -> AsyncIterator[tuple[Upstreams, Metrics]]:
    """Clients whose upstreams all live on ``sim`` (``SIM_URL``), with extra BFF settings."""
    settings = load_settings({"SIM_URL": sim.url, **env})
    metrics = Metrics()
    async with open_upstreams(settings, metrics) as upstreams:
        yield upstreams, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
