"""How long a proof's ``jti`` is remembered, and the per-instance memory that stands in for the
session tier while it is down: bounded per device, so that one device's flood never makes
another tenant's fresh proofs look replayed, with the per-device rate limit still applied."""

from __future__ import annotations

import time
from typing import Any

import redis

from edge.auth.chain import LocalRateCounter, LocalReplayCache
from tests.edge.auth.conftest import refused
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.procs import PrivateRedis
from tests.support.sim import SimHandle

WHOAMI = "/bff/backoffice/v1/_test/whoami"
TTL_S = 96.0
FLOODER = ("tnt-demo", "dev-flood")
OTHER = ("tnt-other", "dev-calm")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_device_filling_its_memory_never_refuses_another_tenants_proofs() -> None:
    cache = LocalReplayCache(per_owner=1_000, capacity=100_000, clock=Clock())
    fresh = [cache.add_once(FLOODER, f"jti-{n}", TTL_S) for n in range(5_000)]
    assert fresh == [True] * 1_000 + [False] * 4_000  # the flooder locks out only itself
    assert len(cache) == 1_000
    assert all(cache.add_once(OTHER, f"jti-{n}", TTL_S) for n in range(1_000))
    assert not cache.add_once(OTHER, "jti-7", TTL_S)  # replays are still refused


def test_the_whole_memory_forgets_the_least_recent_devices_first() -> None:
    cache = LocalReplayCache(per_owner=10, capacity=30, clock=Clock())
    for device in range(10):  # 10 devices of 10 proofs each, 30 entries at most
        for n in range(10):
            assert cache.add_once(("tnt-demo", f"dev-{device}"), f"jti-{n}", TTL_S)
    assert len(cache) == 30
    assert not cache.add_once(("tnt-demo", "dev-9"), "jti-0", TTL_S)  # remembered
    assert cache.add_once(("tnt-demo", "dev-0"), "jti-0", TTL_S)  # forgotten, whole device
    assert cache.add_once(OTHER, "jti-0", TTL_S)  # a newcomer always gets in


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = LocalReplayCache(per_owner=3, capacity=100, clock=clock)
    assert all(cache.add_once(FLOODER, f"jti-{n}", TTL_S) for n in range(3))
    assert not cache.add_once(FLOODER, "jti-3", TTL_S)  # full
    clock.now += TTL_S - 1
    assert not cache.add_once(FLOODER, "jti-0", TTL_S)
    clock.now += 1
    assert cache.add_once(FLOODER, "jti-0", TTL_S)  # expired: room again
    assert len(cache) == 1


def test_the_local_rate_counter_counts_per_device_and_minute() -> None:
    counter = LocalRateCounter(capacity=2)
    assert [counter.hit(FLOODER, 100) for _ in range(3)] == [1, 2, 3]
    assert counter.hit(OTHER, 100) == 1
    assert counter.hit(FLOODER, 101) == 1  # a new minute
    counter.hit(("tnt-demo", "dev-3"), 101)  # a third device: the least recent is forgotten
    assert counter.hit(OTHER, 101) == 1


def test_the_rate_limit_holds_while_the_session_tier_is_down(
    start_bff: ServiceFactory, sim: SimHandle, log_dir: Any
) -> None:
    limit = 3
    session_tier = PrivateRedis(log_dir)
    try:
        bff = start_bff(
            SIM_URL=sim.url,
            BFF_REDIS_SESSION_URL=session_tier.url,
            BFF_DEPENDENCY_TIMEOUT_S="0.5",
            BFF_RATE_LIMIT_PER_MINUTE=str(limit),
        )
        session_tier.stop()
        for _ in range(3):  # a burst straddling a minute boundary is sent again, not judged
            desk = Desktop(bff.url, sim.url, "fd.demo")  # a new device: its own counter
            started = time.time()
            answers = [desk.get(WHOAMI) for _ in range(limit + 2)]
            if int(started // 60) == int(time.time() // 60):
                break
        assert [a.status_code for a in answers] == [200] * limit + [429] * 2, answers[-1].text
        refused(answers[-1], 429, "RATE_LIMITED")
        assert int(answers[-1].headers["retry-after"]) >= 1
        other = Desktop(bff.url, sim.url, "fd.other", tenant="tnt-other")
        assert other.get(WHOAMI).status_code == 200  # another device is not limited
    finally:
        session_tier.stop()


def test_a_jti_outlives_its_acceptance_window_by_the_clock_skew_margin(
    desk: Desktop, redis_prefix: str
) -> None:
    """Proofs are accepted for 60 s after and 5 s before their ``iat``, on instances whose
    clocks may differ: the replay key must live longer than 65 s (by ~30 s)."""
    assert desk.get(WHOAMI).status_code == 200
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{redis_prefix}:tnt-demo:dpop:*"))
        assert keys
        assert min(client.ttl(key) for key in keys) >= 65 + 25
    finally:
        client.close()
