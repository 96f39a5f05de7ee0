"""``POST /auth/refresh`` needs no session, so anyone can call it (issue #11 finding 7): it is
rate-limited per device key and per client address before iam is asked, and iam's refresh
operations wait in a concurrency lane of their own, so a refresh flood while iam is slow cannot
hold up step-up verification or a JWKS fetch."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
import trio
from jwcrypto import jwk

from edge.auth.dpop import make_proof
from edge.auth.refresh import RefreshThrottle
from edge.errors import ApiError, Code
from edge.redis_tier import RedisTier
from ops.sim.desktop import BFF_REFRESH_PATH
from tests.edge.auth.conftest import refused
from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.procs import wait_until
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"
SENSITIVE = "/bff/backoffice/v1/_test/sensitive"
INTROSPECT = "/iam/v1/service/refresh-tokens/introspect"


def _introspections(sim: SimHandle, *, unanswered: bool = False) -> list[dict[str, Any]]:
    calls = [c for c in sim.calls("iam", kind="all") if c["path"] == INTROSPECT]
    return [c for c in calls if c["status"] == 0] if unanswered else calls


def _stranger_refresh(bff_url: str, key: jwk.JWK | None = None) -> tuple[str, dict[str, str]]:
    """Headers of a refresh anyone can send: a valid proof by a key of their own (a new one
    unless ``key`` is given), no access token."""
    url = bff_url + BFF_REFRESH_PATH
    proof = make_proof(
        key or jwk.JWK.generate(kty="EC", crv="P-256"),
        method="POST",
        url=url,
        iat=time.time(),
        jti=uuid.uuid4().hex,
    )
    return url, {"DPoP": proof, "X-App-Version": APP_VERSION}


def _until_limited(send: Any, limit: int) -> tuple[int, httpx.Response]:
    """Send until the first 429: (answers before it, the 429). Windows are fixed minutes, so a
    window boundary in between can give at most ``2 * limit`` answers before it."""
    for sent in range(2 * limit + 1):
        answer: httpx.Response = send()
        if answer.status_code == 429:
            return sent, answer
        assert answer.status_code == 401, answer.text  # iam: no such refresh token
    raise AssertionError(f"no 429 after {2 * limit + 1} refreshes (limit {limit} a minute)")


def _assert_rate_limited(answer: httpx.Response, what: str) -> None:
    body = refused(answer, 429, "RATE_LIMITED")
    assert what in body["message"] and body["retryable"] is True
    assert 1 <= int(answer.headers["Retry-After"]) <= 60


def test_a_refresh_flood_from_one_device_is_rate_limited(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_REFRESH_LIMIT_PER_DEVICE="3")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    before, limited = _until_limited(
        lambda: desk.refresh_response(refresh_token=f"stolen-{uuid.uuid4().hex}"), 3
    )
    assert 3 <= before <= 6
    _assert_rate_limited(limited, "device")
    assert len(_introspections(sim)) == before  # the refused ones never reached iam
    # the device's own, genuine refresh is refused too for the rest of the minute (unless the
    # minute just turned), and iam is not asked
    again = desk.refresh_response()
    if again.status_code == 429:
        _assert_rate_limited(again, "device")
        assert len(_introspections(sim)) == before
    # other devices are not limited by it
    other = Desktop(bff.url, sim.url, "hk.demo")
    assert other.refresh_response().status_code == 200


def test_a_refresh_flood_from_one_address_is_rate_limited(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    """New keys do not get round the limit: the client address is counted too."""
    bff = start_bff(SIM_URL=sim.url, BFF_REFRESH_LIMIT_PER_ADDRESS="5")

    def stranger() -> httpx.Response:
        url, headers = _stranger_refresh(bff.url)
        return httpx.post(url, headers=headers, json={"refreshToken": "guess"}, timeout=10)

    before, limited = _until_limited(stranger, 5)
    assert 5 <= before <= 10
    _assert_rate_limited(limited, "address")
    assert len(_introspections(sim)) == before


async def test_the_limits_hold_per_instance_while_the_session_tier_is_down() -> None:
    """Counted in this process while the session tier cannot count (a tier never opened: every
    call is an outage, as when Redis is down)."""
    tier = RedisTier("session", "redis://127.0.0.1:1/0", "t", timeout=0.5)
    minute = 1_800_000_000.0  # a minute's start: the test cannot straddle two windows
    throttle = RefreshThrottle(tier, per_device=2, per_address=3, clock=lambda: minute + 20)
    await throttle.check("10.0.0.1", "key-a")
    await throttle.check("10.0.0.1", "key-a")
    with pytest.raises(ApiError) as device:
        await throttle.check("10.0.0.1", "key-a")
    assert device.value.code is Code.RATE_LIMITED and "device" in device.value.message
    assert device.value.headers == {"Retry-After": "40"}
    with pytest.raises(ApiError) as address:
        await throttle.check("10.0.0.1", "key-b")  # the address's 4th
    assert address.value.code is Code.RATE_LIMITED and "address" in address.value.message
    await throttle.check("10.0.0.2", "key-c")  # others are not limited


FLOOD = 30  # strangers refreshing over and over, each with a new key
IAM_LATENCY_MS = 100  # iam is slow, but answers within attestStepUp's 200 ms


def test_a_refresh_flood_while_iam_is_slow_does_not_hold_up_step_up(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    """Two slots for iam and two for its refresh operations: 30 clients refreshing without
    pause keep the refresh lane full and a queue behind it, and a step-up verification sent
    meanwhile still gets an iam slot at once, completing within its own 200 ms timeout. (When
    they shared iam's one limit it waited behind the flood until its budget was gone, and the
    flood's timeouts in the queue opened iam's circuit.)"""
    bff = start_bff(
        SIM_URL=sim.url,
        BFF_UPSTREAM_CONCURRENCY="2",
        BFF_UPSTREAM_REFRESH_CONCURRENCY="2",
        BFF_REFRESH_LIMIT_PER_ADDRESS="100000",
    )
    desk = Desktop(bff.url, sim.url, "fd.demo")
    assert desk.get(WHOAMI).status_code == 200  # keys and tenant status are cached
    attestation = desk.device.step_up("lock.revoke").attestation_token
    sim.fault("iam", "latency", latency_ms=IAM_LATENCY_MS)
    statuses: list[int] = []
    outcome: dict[str, Any] = {}

    async def flood(client: httpx.AsyncClient, stop: trio.Event) -> None:
        while not stop.is_set():
            url, headers = _stranger_refresh(bff.url)
            answer = await client.post(url, headers=headers, json={"refreshToken": "guess"})
            statuses.append(answer.status_code)

    def step_up() -> None:
        started = time.monotonic()
        answer = desk.post(
            SENSITIVE, json={"action": "lock.revoke"}, headers={"X-MFA-Attestation": attestation}
        )
        outcome.update(answer=answer, seconds=time.monotonic() - started)

    def lane_full() -> bool:
        return len(_introspections(sim, unanswered=True)) >= 2

    async def main() -> None:
        stop = trio.Event()
        limits = httpx.Limits(max_connections=FLOOD)
        async with (
            httpx.AsyncClient(timeout=30, limits=limits) as client,
            trio.open_nursery() as nursery,
        ):
            for _ in range(FLOOD):
                nursery.start_soon(flood, client, stop)
            await trio.to_thread.run_sync(
                wait_until, lane_full, 10, "the refresh slots to be taken (the rest queue)", 0.005
            )
            await trio.to_thread.run_sync(step_up)
            stop.set()

    trio.run(main)
    answer: httpx.Response = outcome["answer"]
    assert answer.status_code == 200, (answer.text, outcome)
    assert answer.json() == {"done": True}
    # the flood was queueing all along: refreshes gave up waiting for the refresh lane
    assert 504 in statuses and set(statuses) <= {401, 504}, sorted(statuses)
    ready = httpx.get(f"{bff.url}/health/ready", timeout=5).json()
    assert ready["checks"]["upstreamCircuits"] == {"ok": True}  # queueing is not iam failing
