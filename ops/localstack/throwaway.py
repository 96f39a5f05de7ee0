"""Throwaway Postgres databases and Redis key spaces for one run (``smoke-image``): on the test
servers when they answer, else on private ones; removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import redis

from ops.localstack import deps
from ops.localstack.procs import free_port, port_open, wait_for

DEFAULT_TEST_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@contextlib.contextmanager
def postgres(work: Path, purpose: str = "smoke") -> Iterator[str]:
    """A throwaway database (on the test server, or a private cluster), dropped afterwards."""
    admin, stop = deps.ensure_postgres(
        os.environ.get("BFF_TEST_PG_URL") or DEFAULT_TEST_PG,
        base=work / "pg",
        port=free_port(),
        record=False,
    )
    name = f"bff_{purpose}_{os.getpid()}"
    try:
        yield deps.with_port(admin, deps.host_port(admin, 5432)[1], f"/{name}")
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            asyncio.run(_drop_database(admin, name))
        if stop:
            subprocess.run(stop, capture_output=True, check=False)


async def _drop_database(admin: str, name: str) -> None:
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@contextlib.contextmanager
def redis_server(work: Path, prefix: str) -> Iterator[str]:
    """The test Redis (or a throwaway one); this run's keys are deleted afterwards."""
    url = os.environ.get("BFF_TEST_REDIS_URL") or DEFAULT_REDIS
    host, port = deps.host_port(url, 6379)
    server = None
    if not port_open(port, host):
        port = free_port()
        (work / "redis").mkdir()
        argv = deps.redis_argv(port, work / "redis")
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(port), 15, "throwaway redis")
        url = f"redis://127.0.0.1:{port}/0"
    try:
        yield url
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        else:
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis.from_url(url)
                for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                    client.delete(key)
