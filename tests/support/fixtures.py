"""Fixtures every suite shares, loaded through ``pytest_plugins`` (tests/conftest.py)."""

# trio_asyncio patches asyncio's loop lookup at import time: import it first.
import trio_asyncio  # noqa: I001

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio

from edge.redis_tier import RedisTier
from ledger.migrate import admin_sql, migrate
from ledger.database import Database, contain_asyncio_errors
from tests.support.procs import ServiceProcess

RUN_ID = uuid.uuid4().hex[:8]
PG_ADMIN_URL = os.environ.get("BFF_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BFF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_counter = iter(range(1, 1_000_000))


def _dsn_for(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _admin(sql: str, admin_url: str = PG_ADMIN_URL) -> None:
    await admin_sql(admin_url, sql)


async def _create_and_migrate(dsn: str, name: str, admin_url: str = PG_ADMIN_URL) -> None:
    await _admin(f'CREATE DATABASE "{name}"', admin_url)
    async with trio_asyncio.open_loop():
        db = Database(dsn, timeout=30)
        await db.open()
        try:
            await migrate(db)
        finally:
            await db.close()


@pytest.fixture(scope="session")
def migrated_template() -> Iterator[str]:
    """One migrated database per run; every test's database is a copy of it (``TEMPLATE``
    copies files: much cheaper than running the migrations again)."""
    name = f"bfft_{RUN_ID}_template"
    trio.run(_create_and_migrate, _dsn_for(name), name)
    try:
        yield name
    finally:
        trio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for this test; dropped afterwards."""
    name = f"bfft_{RUN_ID}_{next(_counter)}"
    trio.run(_admin, f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    try:
        yield _dsn_for(name)
    finally:
        trio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A fresh database with no schema at all; dropped afterwards."""
    name = f"bfft_{RUN_ID}_{next(_counter)}"
    trio.run(_admin, f'CREATE DATABASE "{name}"')
    try:
        yield _dsn_for(name)
    finally:
        trio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix owned by this test; its keys are deleted afterwards."""
    prefix = f"t{RUN_ID}{next(_counter)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def aio_loop() -> AsyncIterator[object]:
    """The trio-asyncio loop asyncpg and redis-py need, for in-process tests: set up as the
    service sets up its own (asyncio errors no caller can receive are logged, not raised)."""
    async with trio_asyncio.open_loop() as loop:
        contain_asyncio_errors(loop)
        yield loop


@pytest.fixture
async def db(aio_loop: object, database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, max_size=20, timeout=10)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def tier(aio_loop: object, redis_prefix: str) -> AsyncIterator[RedisTier]:
    """A Redis client on this test's key prefix (as the embedded bus and the tiers use it)."""
    t = RedisTier("bus", REDIS_URL, redis_prefix, timeout=2.0)
    await t.open()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def base_env(database_url: str, redis_prefix: str) -> dict[str, str]:
    """Environment of a BFF process wired to this test's database and Redis prefix."""
    return {
        "BFF_DATABASE_URL": database_url,
        "BFF_REDIS_CACHE_URL": REDIS_URL,
        "BFF_REDIS_SESSION_URL": REDIS_URL,
        "BFF_REDIS_PREFIX": redis_prefix,
        "BFF_ENABLE_TEST_ROUTES": "1",
        "BFF_LOG_LEVEL": "INFO",
        "BFF_BUS": "embedded",
        "PUBSUB_EMULATOR_HOST": "",
        "BFF_ADMIN_PORT": "0",  # admin server off unless a test picks a free port
        "BFF_WORKERS": "1",  # one process, as before, unless a test asks for workers
    }


ServiceFactory = Callable[..., ServiceProcess]


@pytest.fixture
def start_bff(base_env: dict[str, str], log_dir: Path) -> Iterator[ServiceFactory]:
    """Start BFF processes (``start_bff(**env_overrides)``); all are stopped at teardown."""
    started: list[ServiceProcess] = []

    def start(**overrides: str) -> ServiceProcess:
        name = f"bff-{len(started) + 1}"
        proc = ServiceProcess("edge", {**base_env, **overrides}, log_dir, name=name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
