"""Idempotency-store benchmark: what the layer adds to a mutation, and what a replay costs.

``python -m ops.bench.idempotency [--seconds 3] [--workers 1,10,50] [--dsn URL]``

Creates a scratch database next to ``BFF_DATABASE_URL`` (dropped at the end) and, for each
worker count, runs closed-loop workers against :class:`ledger.idempotency.IdempotencyStore`:

* ``first``  — ``claim`` (a new key) then ``complete`` with a 200-byte answer: the two round
  trips a first request adds to a mutation (goal: ≤ 3 ms p95 with its ledger rows);
* ``replay`` — ``claim`` of a key already done, which answers the stored response (goal:
  ≤ 5 ms p95 for the whole replayed request).

Prints p50/p95/p99 latency and operations per second.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio
import trio_asyncio

from ledger.database import Database
from ledger.idempotency import Claimed, IdempotencyStore, Replay, StoredResponse
from ledger.migrate import migrate

ANSWER = StoredResponse(
    status=200,
    body=b'{"reservationId":"res-1","status":"checked_in","room":"101"}'.ljust(200, b" "),
    content_type="application/json; charset=utf-8",
    headers=(("Cache-Control", "no-store"),),
)
REPLAY_KEYS = 1000


def pct(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(
    workers: int, seconds: float, op: Callable[[int, int], Awaitable[None]]
) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            await op(w, n)
            latencies.append(time.perf_counter() - began)
            n += 1

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for w in range(workers):
            nursery.start_soon(worker, w)
    return latencies, time.perf_counter() - began


async def first(store: IdempotencyStore, w: int, n: int) -> None:
    key = uuid.uuid4().hex
    claim = await store.claim("tnt-bench", f"dev-{w}", key, hashlib.sha256(key.encode()).digest())
    assert isinstance(claim, Claimed)
    assert await store.complete(claim, ANSWER)


async def replay(store: IdempotencyStore, w: int, n: int) -> None:
    key = f"replay-{n % REPLAY_KEYS}"
    answer = await store.claim("tnt-bench", "dev-replay", key, b"fp")
    assert isinstance(answer, Replay)


async def admin(dsn: str, sql: str) -> None:
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn, timeout=10)
    try:
        await trio_asyncio.aio_as_trio(conn.execute)(sql)
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def bench(db: Database, counts: list[int], seconds: float) -> None:
    store = IdempotencyStore(db)
    for n in range(REPLAY_KEYS):
        claim = await store.claim("tnt-bench", "dev-replay", f"replay-{n}", b"fp")
        assert isinstance(claim, Claimed)
        await store.complete(claim, ANSWER)
    columns = ("ops", "ops/s", "p50 ms", "p95 ms", "p99 ms")
    print(f"{'op':<7} {'workers':>7} " + " ".join(f"{c:>7}" for c in columns))
    for workers in counts:
        for name, op in (("first", first), ("replay", replay)):
            latencies, took = await drive(workers, seconds, partial(op, store))
            print(
                f"{name:<7} {workers:>7} {len(latencies):>7} {len(latencies) / took:>7.0f} "
                f"{pct(latencies, 0.5):>7.2f} {pct(latencies, 0.95):>7.2f} "
                f"{pct(latencies, 0.99):>7.2f}"
            )


async def main(dsn_base: str, counts: list[int], seconds: float, pool: int) -> None:
    name = f"bench_idem_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(dsn_base)
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    async with trio_asyncio.open_loop():
        await admin(admin_dsn, f'CREATE DATABASE "{name}"')
        try:
            db = Database(dsn, max_size=pool, timeout=30)
            await db.open()
            try:
                await migrate(db)
                print(
                    f"idempotency store benchmark: {seconds:.0f}s per cell, pool {pool}, "
                    f"python {sys.version.split()[0]}"
                )
                await bench(db, counts, seconds)
            finally:
                await db.close()
        finally:
            await admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli() -> None:
    from edge.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", default="1,10,50")
    parser.add_argument("--pool", type=int, default=10, help="pool size (BFF_DB_POOL_MAX)")
    parser.add_argument("--dsn", default=None, help="default: BFF_DATABASE_URL")
    args = parser.parse_args()
    dsn = args.dsn or load_settings().database_url
    trio.run(main, dsn, [int(c) for c in args.workers.split(",")], args.seconds, args.pool)


if __name__ == "__main__":
    cli()
