"""What the trio-asyncio bridge costs per call (issue #14): the same Postgres and Redis calls made
through ``trio_asyncio.aio_as_trio`` (how the service makes every one of them) and, as the
baseline in the same run, from plain asyncio in a process of its own.

    .venv/bin/python -m ops.bench.bridge [--calls 3000] [--pg URL] [--redis URL]

Prints, per call kind: CPU per call (``time.process_time``, this process only: the servers'
work is not counted), p50/p95/p99 of the wall time of one call, calls per second, and the ratio
of each bridged figure to the plain-asyncio one. Calls are sequential (one in flight), so the
figures are the per-call overhead, not a throughput ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import trio_asyncio

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
Call = Callable[[], Awaitable[Any]]


def _figures(cpu_s: float, walls: list[float]) -> dict[str, float]:
    quantiles = statistics.quantiles(walls, n=100)
    return {
        "cpu_us": cpu_s / len(walls) * 1e6,
        "p50_us": quantiles[49] * 1e6,
        "p95_us": quantiles[94] * 1e6,
        "p99_us": quantiles[98] * 1e6,
        "per_s": len(walls) / sum(walls),
    }


Calls = dict[str, Call]


def _calls(pool: Any, client: Any) -> Calls:
    """The calls compared: a no-op, one Postgres row (acquire, fetch, release), one Redis GET."""

    async def noop() -> int:
        return 1

    async def fetchrow() -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchrow("SELECT $1::int", 1)

    async def get() -> Any:
        return await client.get("bff-bench:bridge")

    return {"no-op": noop, "postgres fetchrow": fetchrow, "redis GET": get}


async def _timed(call: Call, calls: int) -> dict[str, float]:
    for _ in range(min(200, calls)):
        await call()
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - started)
    return _figures(time.process_time() - cpu, walls)


async def _plain_calls(pg: str, url: str, calls: int) -> dict[str, dict[str, float]]:
    """The baseline: the same calls from plain asyncio."""
    pool = await asyncpg.create_pool(pg, min_size=1, max_size=2)
    client = aioredis.Redis.from_url(url)
    results = {name: await _timed(call, calls) for name, call in _calls(pool, client).items()}
    await client.aclose()
    await pool.close()
    return results


async def _bridged_calls(pg: str, url: str, calls: int) -> dict[str, dict[str, float]]:
    """The service's way: each call is one ``aio_as_trio`` crossing from a Trio task."""
    pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(pg, min_size=1, max_size=2)
    client = aioredis.Redis.from_url(url)
    results = {
        name: await _timed(trio_asyncio.aio_as_trio(call), calls)
        for name, call in _calls(pool, client).items()
    }
    await trio_asyncio.aio_as_trio(client.aclose)()
    await trio_asyncio.aio_as_trio(pool.close)()
    return results


def _baseline(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    argv = [sys.executable, "-m", "ops.bench.bridge", "--plain", "--calls", str(args.calls)]
    argv += ["--pg", args.pg, "--redis", args.redis]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    figures: dict[str, dict[str, float]] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.bridge", description=__doc__)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(asyncio.run(_plain_calls(args.pg, args.redis, args.calls))))
        return
    plain = _baseline(args)
    bridged = trio_asyncio.run(_bridged_calls, args.pg, args.redis, args.calls)
    load = Path("/proc/loadavg").read_text()[:14]
    print(f"{args.calls} sequential calls each; load average {load}")
    print()
    print("| call | via | CPU µs/call | p50 µs | p95 µs | p99 µs | calls/s | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, figures in plain.items():
        for via, row in (("plain asyncio (baseline)", figures), ("trio-asyncio", bridged[name])):
            ratio = row["cpu_us"] / figures["cpu_us"]
            print(
                f"| {name} | {via} | {row['cpu_us']:.0f} | {row['p50_us']:.0f} | "
                f"{row['p95_us']:.0f} | {row['p99_us']:.0f} | {row['per_s']:,.0f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
