"""Readiness names the dependency that is down and recovers when it returns.

The test stops private Redis/Postgres servers it started itself, never the machine's shared ones.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fixtures import ServiceFactory
from tests.support.procs import PrivatePostgres, PrivateRedis, wait_until


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
