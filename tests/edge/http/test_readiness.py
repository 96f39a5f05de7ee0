"""Readiness names the dependency that is down and recovers when it returns.

The test stops private Redis/Postgres servers it started itself, never the machine's shared ones.
"""

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge.http.test_admin_endpoint import _poison, heartbeat
from tests.support.fixtures import ServiceFactory
from tests.support.procs import PrivatePostgres, PrivateRedis, SilentServer, free_port, wait_until


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


def _log_records(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def test_public_readiness_names_no_host_driver_text_or_ids(
    start_bff: ServiceFactory, private_pg: PrivatePostgres
) -> None:
    """Issue #11 finding 9: ``/health/ready`` is public. With Postgres gone and an actor whose
    supervisor gave up it says which checks fail in fixed words; the driver's message (host,
    port) and the actor's address (tenant and device ids) are in the log only."""
    import trio

    from tests.support.fixtures import _create_and_migrate

    dsn = private_pg.url.rsplit("/", 1)[0] + "/bff"
    trio.run(_create_and_migrate, dsn, "bff", private_pg.url)
    trio.run(_poison, dsn)  # device/tnt-a/dev-bad can never activate
    admin_port = free_port()
    bff = start_bff(
        BFF_DATABASE_URL=dsn,
        BFF_DEPENDENCY_TIMEOUT_S="0.5",
        BFF_ADMIN_PORT=str(admin_port),
        BFF_ACTOR_MAX_RESTARTS="2",
        BFF_ACTOR_RESTART_MIN_S="0.01",
        BFF_ACTOR_RESTART_MAX_S="0.02",
    )
    assert heartbeat(f"http://127.0.0.1:{admin_port}", "dev-bad", "c1").status_code == 503
    private_pg.stop()
    body = _wait_status(bff.url, 503)
    wait_until(
        lambda: _ready(bff.url)[1]["down"] == ["actors", "postgres"], 30, "postgres to be down"
    )
    response = httpx.get(f"{bff.url}/health/ready", timeout=10)
    body = response.json()
    assert response.status_code == 503 and body["down"] == ["actors", "postgres"], body
    text = response.text
    for secret in (str(private_pg.port), "127.0.0.1", "postgres@", "dev-bad", "tnt-a", "device/"):
        assert secret not in text, (secret, text)
    for driver in ("Error", "Errno", "refused", "closed", "asyncpg", "Connect"):
        assert driver not in text, (driver, text)
    assert body["checks"]["postgres"] == {
        "ok": False,
        "detail": body["checks"]["postgres"]["detail"],
    }
    assert body["checks"]["postgres"]["detail"] and body["checks"]["actors"]["detail"]

    def logged() -> bool:
        _ready(bff.url)  # probes run on demand
        records = _log_records(bff.output())
        failing = [r for r in records if r.get("msg") == "readiness check failing"]
        gave_up = [r for r in records if r.get("msg") == "actor supervisor gave up"]
        port = str(private_pg.port)
        return any(r.get("check") == "postgres" and port in r["reason"] for r in failing) and any(
            r.get("actor") == "device/tnt-a/dev-bad" for r in gave_up
        )

    wait_until(logged, 10, "the details in the log")


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
            assert str(silent.port) not in response.text and "127.0.0.1" not in response.text
            if required:
                assert response.status_code == 503 and body["down"] == [name], body
            else:
                assert response.status_code == 200 and body["down"] == [], body
        assert silent.accepted  # it did connect: it is the answer that never came
