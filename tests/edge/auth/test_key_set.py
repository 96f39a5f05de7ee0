"""iam's key set (JWKS) under load and outages: one refresh in flight at a time, stale keys
served meanwhile, failed fetches backed off, unknown ``kid``s refetched at most once per
interval. Unit tests on Trio's virtual clock with a counting fake of iam's JWKS endpoint, and
the stampede once more over real processes, counted at the simulator's iam."""

from __future__ import annotations

import time

import httpx
import pytest
import trio
import trio.testing
from jwcrypto import jwk

from edge.auth.tokens import KeySet, KeySetUnavailable
from schemas.upstream.iam import Jwk, Jwks
from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"
JWKS_PATH = "/iam/.well-known/jwks.json"


def _key(kid: str) -> jwk.JWK:
    return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid)


class Iam:
    """iam's JWKS endpoint: counts fetches, answers after ``latency_s``, or fails when down."""

    def __init__(self, *keys: jwk.JWK, latency_s: float = 0.6) -> None:
        self.keys = list(keys)
        self.latency_s = latency_s
        self.down = False
        self.fetches = 0
        self.fetched_at: list[float] = []

    async def fetch(self) -> Jwks:
        self.fetches += 1
        self.fetched_at.append(trio.current_time())
        await trio.sleep(self.latency_s)
        if self.down:
            raise ConnectionError("iam is down")
        return Jwks(keys=[Jwk(**k.export_public(as_dict=True)) for k in self.keys])


async def _concurrently(keys: KeySet, kids: list[str]) -> list[jwk.JWK | None]:
    found: list[jwk.JWK | None] = []

    async def look_up(kid: str) -> None:
        found.append(await keys.key(kid))

    async with trio.open_nursery() as nursery:
        for kid in kids:
            nursery.start_soon(look_up, kid)
    return found


@pytest.mark.parametrize("min_refetch_s", [5.0, 0.0])  # 0: no rate limit, still one fetch
async def test_fifty_unknown_kids_at_expiry_fetch_once(
    autojump_clock: trio.testing.MockClock, min_refetch_s: float
) -> None:
    old, new = _key("k1"), _key("k2")
    iam = Iam(old)
    keys = KeySet(iam.fetch, ttl_s=600, min_refetch_s=min_refetch_s)
    assert await keys.key("k1") is not None
    iam.keys = [new, old]  # rotation: tokens signed by k2 start to arrive
    await trio.sleep(601)  # the key set expires
    started = trio.current_time()
    found = await _concurrently(keys, ["k2"] * 50)
    assert iam.fetches == 2  # the first fetch and one refresh
    assert all(key is not None for key in found)
    assert trio.current_time() - started == pytest.approx(iam.latency_s)  # nobody queued


@pytest.mark.parametrize("min_refetch_s", [5.0, 0.0])
async def test_made_up_kids_at_expiry_fetch_once(
    autojump_clock: trio.testing.MockClock, min_refetch_s: float
) -> None:
    iam = Iam(_key("k1"))
    keys = KeySet(iam.fetch, ttl_s=600, min_refetch_s=min_refetch_s)
    await keys.key("k1")
    await trio.sleep(601)
    found = await _concurrently(keys, [f"forged-{n}" for n in range(50)])
    assert found == [None] * 50
    assert iam.fetches == 2


async def test_known_keys_are_served_stale_while_a_refresh_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    iam = Iam(_key("k1"), latency_s=5)
    keys = KeySet(iam.fetch, ttl_s=600)
    await keys.key("k1")
    await trio.sleep(601)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keys.key, "k1")  # refreshes, for 5 s
        await trio.testing.wait_all_tasks_blocked()
        asked = trio.current_time()
        assert await keys.key("k1") is not None
        assert trio.current_time() == asked  # no waiting for the refresh
    assert iam.fetches == 2


async def test_a_failed_first_fetch_is_backed_off(autojump_clock: trio.testing.MockClock) -> None:
    iam = Iam(_key("k1"), latency_s=0)
    iam.down = True
    keys = KeySet(iam.fetch, backoff_s=1, max_backoff_s=4)
    for _ in range(20):  # e.g. every request while iam is down
        with pytest.raises(KeySetUnavailable, match="iam is down"):
            await keys.key("k1")
    assert iam.fetches == 1
    # Later attempts wait 1, 2, 4, 4 … s after the previous one, whatever the traffic.
    for _ in range(80):
        await trio.sleep(0.25)
        with pytest.raises(KeySetUnavailable):
            await keys.key("k1")
    gaps = [round(b - a, 1) for a, b in zip(iam.fetched_at, iam.fetched_at[1:], strict=False)]
    assert gaps[:4] == [1.0, 2.0, 4.0, 4.0]
    iam.down = False
    await trio.sleep(4)
    assert await keys.key("k1") is not None  # recovered: keys, and no more backing off
    assert keys.failed_fetches == len(iam.fetched_at) - 1


async def test_unknown_kids_while_iam_is_down_do_not_refetch_each_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    iam = Iam(_key("k1"), latency_s=0)
    keys = KeySet(iam.fetch, min_refetch_s=5)
    await keys.key("k1")
    iam.down = True
    await trio.sleep(5)
    for n in range(10):
        assert await keys.key(f"forged-{n}") is None
    assert iam.fetches == 2  # one refetch failed; it is remembered, not retried per token
    assert await keys.key("k1") is not None  # the cached keys still verify


async def test_stale_keys_are_served_while_iam_is_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    iam = Iam(_key("k1"), latency_s=0)
    keys = KeySet(iam.fetch, ttl_s=600)
    await keys.key("k1")
    iam.down = True
    await trio.sleep(601)
    for _ in range(50):
        assert await keys.key("k1") is not None
    assert iam.fetches == 2


def test_fifty_unknown_kid_tokens_at_key_set_expiry_are_one_fetch_at_iam(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    ttl_s = 1.0
    bff = start_bff(SIM_URL=sim.url, BFF_JWKS_TTL_S=str(ttl_s))
    desk = Desktop(bff.url, sim.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200  # the key set is fetched
    sim.post("/_sim/iam/rotate-keys", json={"retainPrevious": True})
    mint = f"/_sim/iam/sessions/{desk.session_id}/token"
    tokens = [sim.post(mint, json={})["accessToken"] for _ in range(50)]  # the new kid
    sim.fault("iam", "latency", latency_ms=300)  # so that the 50 overlap the refresh
    time.sleep(ttl_s + 0.2)  # the key set expires
    before = len(_jwks_fetches(sim))

    async def call(token: str, statuses: list[int]) -> None:
        headers = desk.device.auth_headers("GET", desk.bff_url + WHOAMI)
        headers["Authorization"] = f"DPoP {token}"
        headers["DPoP"] = desk.device.proof("GET", desk.bff_url + WHOAMI, access_token=token)
        async with httpx.AsyncClient(base_url=bff.url, timeout=60) as client:
            statuses.append((await client.get(WHOAMI, headers=headers)).status_code)

    async def burst() -> list[int]:
        statuses: list[int] = []
        async with trio.open_nursery() as nursery:
            for token in tokens:
                nursery.start_soon(call, token, statuses)
        return statuses

    statuses = trio.run(burst)
    sim.clear_faults()
    assert statuses == [200] * 50
    assert len(_jwks_fetches(sim)) - before == 1


def _jwks_fetches(sim: SimHandle) -> list[dict[str, object]]:
    return [c for c in sim.calls("iam", kind="all") if c["path"] == JWKS_PATH]
