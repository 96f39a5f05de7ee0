"""A throwaway BFF + simulator for a benchmark run: scratch database, own Redis key prefix,
processes on free ports; everything removed at the end.

Uses ``BFF_DATABASE_URL`` (its server) and ``BFF_REDIS_SESSION_URL`` as ``./ops/stack`` resolves
them; start the stack's dependencies first (``./ops/stack up --detach``) or export URLs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import trio

from ledger.migrate import admin_sql

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchStack:
    bff_url: str
    sim_url: str
    database_url: str
    redis_url: str
    redis_prefix: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@contextmanager
def bench_stack(*, sim_env: dict[str, str] | None = None, **bff_env: str) -> Iterator[BenchStack]:
    base = os.environ.get("BFF_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bff_backoffice")
    redis_url = os.environ.get("BFF_REDIS_SESSION_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(base)
    name = f"bff_bench_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    database_url = urlunsplit(parts._replace(path=f"/{name}"))
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    logs = Path(tempfile.mkdtemp(prefix="bff-bench-"))
    trio.run(admin_sql, admin, f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, "BFF_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        subprocess.run(
            [sys.executable, "-m", "edge.migrations"], env=env, check=True, capture_output=True
        )
        sim_port, bff_port = _free_port(), _free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        common = {
            "BFF_REDIS_SESSION_URL": redis_url,
            "BFF_REDIS_CACHE_URL": redis_url,
            "BFF_REDIS_PREFIX": prefix,
            "BFF_BUS": "embedded",
            "PUBSUB_EMULATOR_HOST": "",
        }
        sim = {**env, **common, "PORT": str(sim_port), "SIM_BUS": "record", **(sim_env or {})}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "ops.sim"],
                env=sim,
                cwd=ROOT,
                stdout=(logs / "sim.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait(f"{sim_url}/health")
        bff = {
            **env,
            **common,
            "PORT": str(bff_port),
            "SIM_URL": sim_url,
            "BFF_ADMIN_PORT": "0",
            "BFF_LOG_LEVEL": "WARNING",
            # one process unless the benchmark or the shell asks for workers: the benchmarks
            # read that process's CPU time (a supervisor's would not include its workers')
            "BFF_WORKERS": env.get("BFF_WORKERS") or "1",
            **bff_env,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "edge"],
                env=bff,
                cwd=ROOT,
                stdout=(logs / "bff.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        bff_url = f"http://127.0.0.1:{bff_port}"
        _wait(f"{bff_url}/health/ready")
        yield BenchStack(bff_url, sim_url, database_url, redis_url, prefix)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=20)
        trio.run(admin_sql, admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return float("nan"), float("nan"), float("nan")

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return at(0.50), at(0.95), at(0.99)
