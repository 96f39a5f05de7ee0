"""Readiness names the dependency that is down and recovers when it returns.

The test stops private Redis/Postgres servers it started itself, never the machine's shared ones.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import ServiceFactory
from tests.support.procs import PrivatePostgres, PrivateRedis, SilentServer, wait_until


def _ready(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/health/ready", timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def _wait_status(url: str, status: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        code, body = _ready(url)
        seen.update(body)
        return code == status

    wait_until(check, 30, f"readiness {status}", interval=0.2)
    return seen


@pytest.fixture
def private_redis(log_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_dir)
    yield server
    server.stop()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.destroy()


def test_session_tier_down_then_back(
    start_bff: ServiceFactory, private_redis: PrivateRedis
) -> None:
    bff = start_bff(BFF_REDIS_SESSION_URL=private_redis.url, BFF_DEPENDENCY_TIMEOUT_S="0.5")
    _wait_status(bff.url, 200)
    private_redis.stop()
    body = _wait_status(bff.url, 503)
    assert body["status"] == "not_ready"
    assert body["down"] == ["redisSession"]
    assert body["checks"]["redisSession"]["ok"] is False
    private_redis.start()
    body = _wait_status(bff.url, 200)
    assert body["down"] == []


def test_cache_tier_down_is_reported_but_not_fatal(
    start_bff: ServiceFactory, private_redis: PrivateRedis
) -> None:
    bff = start_bff(BFF_REDIS_CACHE_URL=private_redis.url, BFF_DEPENDENCY_TIMEOUT_S="0.5")
    _wait_status(bff.url, 200)
    private_redis.stop()

    def cache_reported_down() -> bool:
        code, body = _ready(bff.url)
        return code == 200 and body["checks"]["redisCache"]["ok"] is False

    wait_until(cache_reported_down, 30, "cache tier reported down", interval=0.2)


def test_postgres_down_then_back(start_bff: ServiceFactory, private_pg: PrivatePostgres) -> None:
    import trio

    from tests.support.fixtures import _create_and_migrate

    dsn = private_pg.url.rsplit("/", 1)[0] + "/bff"
    trio.run(_create_and_migrate, dsn, "bff", private_pg.url)
    bff = start_bff(BFF_DATABASE_URL=dsn, BFF_DEPENDENCY_TIMEOUT_S="0.5")
    _wait_status(bff.url, 200)
    private_pg.stop()
    body = _wait_status(bff.url, 503)
    assert "postgres" in body["down"]
    private_pg.start()
    body = _wait_status(bff.url, 200)
    assert body["down"] == []


def test_metrics_show_dependency_state(start_bff: ServiceFactory) -> None:
    bff = start_bff()
    _wait_status(bff.url, 200)
    text = httpx.get(f"{bff.url}/metrics").text
    assert 'bff_dependency_up{dependency="postgres"} 1.0' in text


HUNG_TIMEOUT_S = 1.0
HUNG_SLACK_S = 0.75  # HTTP and scheduling on a shared machine (upper bound only)


@pytest.mark.parametrize(
    ("variable", "scheme", "name", "required"),
    [
        ("BFF_REDIS_SESSION_URL", "redis", "redisSession", True),
        ("BFF_REDIS_CACHE_URL", "redis", "redisCache", False),
        ("BFF_DATABASE_URL", "postgresql", "postgres", True),
    ],
    ids=["session-tier", "cache-tier", "postgres"],
)
def test_a_hanging_dependency_is_named_within_the_dependency_timeout(
    start_bff: ServiceFactory, variable: str, scheme: str, name: str, required: bool
) -> None:
    """A dependency that accepts connections and never answers (no refusal to react to) must
    not hold readiness up: /health/ready answers within BFF_DEPENDENCY_TIMEOUT_S and names it
    (down when the service cannot run without it, reported either way)."""
    with SilentServer() as silent:
        bff = start_bff(
            **{variable: silent.url(scheme)}, BFF_DEPENDENCY_TIMEOUT_S=str(HUNG_TIMEOUT_S)
        )
        for attempt in range(2):  # a first connection, then again with the first one hung
            started = time.monotonic()
            response = httpx.get(f"{bff.url}/health/ready", timeout=30)
            elapsed = time.monotonic() - started
            assert elapsed < HUNG_TIMEOUT_S + HUNG_SLACK_S, (attempt, elapsed)
            body = response.json()
            failing = {check for check, result in body["checks"].items() if not result["ok"]}
            assert failing == {name}, body
            assert body["checks"][name]["detail"], body
            if required:
                assert response.status_code == 503 and body["down"] == [name], body
            else:
                assert response.status_code == 200 and body["down"] == [], body
        assert silent.accepted  # it did connect: it is the answer that never came
