"""Build the upstream clients from settings (base URLs, auth, breakers) and close them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from edge.metrics import Metrics
from edge.readiness import Probe
from edge.settings import Settings
from edge.upstream.apis import Upstreams
from edge.upstream.breaker import CircuitBreaker, circuits_probe
from edge.upstream.client import Upstream, UpstreamClient, pool_limits
from edge.upstream.idtoken import IdTokens, MetadataIdTokens, NoIdTokens
from edge.upstream.policy import POLICIES, REFRESH_LANE
from schemas.upstream import UPSTREAM_NAMES, UpstreamName

PRODUCTION_HOST = "https://{name}.melmastoon.internal"


def base_url(settings: Settings, name: UpstreamName) -> str:
    """``BFF_UPSTREAM_<NAME>_URL`` if set; else ``SIM_URL/<name>`` in local mode and
    ``https://<name>.melmastoon.internal`` in production."""
    override = str(getattr(settings, f"upstream_{name}_url", "") or "")
    if override:
        return override.rstrip("/")
    if settings.mode == "production":
        return PRODUCTION_HOST.format(name=name)
    return f"{settings.sim_url.rstrip('/')}/{name}"


def uses_id_tokens(settings: Settings) -> bool:
    if settings.upstream_auth == "auto":
        return settings.mode == "production"
    return settings.upstream_auth == "google"


def lane_capacity(settings: Settings, lane: str) -> int:
    """Requests in flight a policy lane allows (edge/upstream/policy.py)."""
    if lane == REFRESH_LANE:
        return settings.upstream_refresh_concurrency
    return settings.upstream_concurrency


def build_upstreams(settings: Settings, metrics: Metrics) -> Upstreams:
    """Create the clients (nothing connects yet); close with :func:`close_upstreams`."""
    lanes = {
        name: {lane: lane_capacity(settings, lane) for lane in set(POLICIES[name].lanes.values())}
        for name in UPSTREAM_NAMES
    }
    # No httpx timeouts: every attempt runs under a Trio cancel scope (edge/upstream/deadline.py).
    http = httpx.AsyncClient(
        limits=pool_limits(
            settings.upstream_concurrency, sum(sum(c.values()) for c in lanes.values())
        ),
        timeout=None,  # noqa: S113
        follow_redirects=False,
    )
    targets = {
        name: Upstream(
            name=name,
            base_url=base_url(settings, name),
            policy=POLICIES[name],
            breaker=CircuitBreaker(
                name,
                failure_threshold=settings.breaker_failures,
                open_s=settings.breaker_open_s,
                metrics=metrics,
            ),
            limiter=trio.CapacityLimiter(settings.upstream_concurrency),
            lanes={lane: trio.CapacityLimiter(c) for lane, c in lanes[name].items()},
        )
        for name in UPSTREAM_NAMES
    }
    id_tokens: IdTokens = (
        MetadataIdTokens(http, settings.metadata_url, metrics)
        if uses_id_tokens(settings)
        else NoIdTokens()
    )
    return Upstreams.over(UpstreamClient(http, targets, id_tokens, metrics))


def readiness_probe(upstreams: Upstreams) -> Probe:
    return circuits_probe(u.breaker for u in upstreams.client.upstreams.values())


async def close_upstreams(upstreams: Upstreams | None) -> None:
    if upstreams is not None:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await upstreams.client.http.aclose()


@asynccontextmanager
async def open_upstreams(settings: Settings, metrics: Metrics) -> AsyncIterator[Upstreams]:
    """For programs other than the service (benchmarks, tests): build, yield, close."""
    upstreams = build_upstreams(settings, metrics)
    try:
        yield upstreams
    finally:
        await close_upstreams(upstreams)
