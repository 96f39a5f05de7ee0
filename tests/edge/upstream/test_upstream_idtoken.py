"""Upstream auth: Google ID tokens from the metadata server in production mode (audience =
the upstream URL, cached until shortly before expiry), none in local mode."""

from __future__ import annotations

import pytest
import trio

from edge.upstream.errors import UpstreamFailure
from tests.support.sim import SimHandle
from tests.support.upstream import clients_for, sample

T, P = "tnt-demo", "prop-demo-1"


def _production(sim: SimHandle) -> dict[str, str]:
    return {
        "BFF_MODE": "production",
        "BFF_PUBLIC_URL": "https://backoffice.example.test",
        "BFF_METADATA_URL": f"{sim.url}/metadata",
        "BFF_UPSTREAM_TENANT_URL": f"{sim.url}/tenant",
        "BFF_UPSTREAM_PRICING_URL": f"{sim.url}/pricing",
    }


async def test_production_calls_carry_a_cached_id_token_per_audience(sim: SimHandle) -> None:
    async with clients_for(sim, **_production(sim)) as (u, metrics):
        for _ in range(3):
            await u.tenant.tenant(T)
        await u.pricing.rates(T, P)
        assert sample(metrics, "bff_upstream_id_token_fetches_total", outcome="fetched") == 2
    tenant_calls = sim.calls("tenant", kind="all")
    assert [c["auth"] for c in tenant_calls] == ["bearer"] * 3
    assert {c["idTokenAudience"] for c in tenant_calls} == {f"{sim.url}/tenant"}
    [pricing_call] = sim.calls("pricing", kind="all")
    assert pricing_call["idTokenAudience"] == f"{sim.url}/pricing"
    metadata = sim.calls("metadata", kind="all")
    assert len(metadata) == 2


async def test_an_expiring_token_is_fetched_again(sim: SimHandle) -> None:
    # exp is whole seconds (as Google's): a 1 s token can be expired by the time it is read.
    sim.http.put("/_sim/metadata", json={"idTokenTtlS": 2}).raise_for_status()
    async with clients_for(sim, **_production(sim)) as (u, metrics):
        await u.tenant.tenant(T)
        with trio.fail_after(6):  # poll: the cached token is replaced before it expires
            while sample(metrics, "bff_upstream_id_token_fetches_total", outcome="fetched") < 2:
                await u.tenant.tenant(T)
                await trio.sleep(0.05)
    audiences = {c["idTokenAudience"] for c in sim.calls("tenant", kind="all")}
    assert audiences == {f"{sim.url}/tenant"}


async def test_no_token_means_no_call(sim: SimHandle) -> None:
    sim.fault("metadata", "error")
    async with clients_for(sim, **_production(sim)) as (u, metrics):
        with pytest.raises(UpstreamFailure) as failure:
            await u.tenant.tenant(T)
        assert failure.value.kind == "auth"
        assert sample(metrics, "bff_upstream_id_token_fetches_total", outcome="error") == 1
    assert sim.calls("tenant", kind="all") == []


async def test_local_mode_sends_no_token(sim: SimHandle) -> None:
    async with clients_for(sim) as (u, _):
        await u.tenant.tenant(T)
    [call] = sim.calls("tenant", kind="all")
    assert call["auth"] == "none"
    assert sim.calls("metadata", kind="all") == []
