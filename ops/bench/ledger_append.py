"""Ledger append benchmark: group commit vs one transaction per append, same run, same database.

``python -m ops.bench.ledger_append [--seconds 3] [--appenders 1,10,100] [--dsn URL]``

Creates a scratch database next to ``BFF_DATABASE_URL`` (dropped at the end), then for each
appender count runs closed-loop appenders (each appends one event, waits for durability, repeats)
for ``--seconds`` against:

* ``group``  — :class:`ledger.appendlog.Ledger` (one writer task, group-committed batches);
* ``single`` — the baseline: every append is its own transaction (same ``ledger_append`` SQL,
  a connection from the pool per append, as a naive outbox would do).

Prints p50/p95/p99 append latency, throughput, mean batch size, and the group/single ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio
import trio_asyncio

from ledger.appendlog import APPEND_SQL, Ledger, batch_arguments, payload_text
from ledger.database import Database
from ledger.migrate import migrate
from ledger.model import NewEvent

SUBJECT = "melmastoon.bff.backoffice.operator.activity.v1"


@dataclass
class Result:
    mode: str
    appenders: int
    events: int
    seconds: float
    latencies: list[float]
    batches: int

    @property
    def throughput(self) -> float:
        return self.events / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def make_event(i: int, n: int) -> NewEvent:
    return NewEvent(
        tenant="tnt-bench",
        stream=f"device:bench-{i}",
        subject=SUBJECT,
        payload={"widget": "arrivals", "n": n, "propertyId": "prop-demo-1"},
        operator_id="op-bench",
        device_id=f"bench-{i}",
        request_id=uuid.uuid4().hex,
    )


async def drive(
    appenders: int, seconds: float, append: Callable[[NewEvent], Awaitable[None]]
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    stop_at = trio.current_time() + seconds

    async def appender(i: int) -> None:
        n = 0
        while trio.current_time() < stop_at:
            ev = make_event(i, n)
            started = time.perf_counter()
            await append(ev)
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(appenders):
            nursery.start_soon(appender, i)
    return len(latencies), time.perf_counter() - started, latencies


async def run_group(db: Database, appenders: int, seconds: float) -> Result:
    ledger = Ledger(db, max_batch=500)
    async with trio.open_nursery() as nursery:
        await nursery.start(ledger.run)

        async def append(ev: NewEvent) -> None:
            await ledger.append([ev], timeout=30)

        count, took, lat = await drive(appenders, seconds, append)
        nursery.cancel_scope.cancel()
    return Result("group", appenders, count, took, lat, ledger.batches)


async def run_single(db: Database, appenders: int, seconds: float) -> Result:
    async def append(ev: NewEvent) -> None:
        args = batch_arguments([([ev], [payload_text(ev)])])
        async with db.connection(timeout=30) as conn:
            await conn.fetch(APPEND_SQL, *args, timeout=30)

    count, took, lat = await drive(appenders, seconds, append)
    return Result("single", appenders, count, took, lat, count)


async def admin(dsn: str, sql: str) -> None:
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn, timeout=10)
    try:
        await trio_asyncio.aio_as_trio(conn.execute)(sql)
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


def report(results: list[Result]) -> None:
    print(
        f"{'mode':<7} {'appenders':>9} {'events':>8} {'events/s':>9} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'ev/batch':>8}"
    )
    for r in results:
        print(
            f"{r.mode:<7} {r.appenders:>9} {r.events:>8} {r.throughput:>9.0f} "
            f"{r.pct(0.50):>7.2f} {r.pct(0.95):>7.2f} {r.pct(0.99):>7.2f} "
            f"{r.events / max(r.batches, 1):>8.1f}"
        )
    print("\nratio group/single (same run):")
    by = {(r.mode, r.appenders): r for r in results}
    for n in sorted({r.appenders for r in results}):
        g, s = by.get(("group", n)), by.get(("single", n))
        if g and s:
            print(
                f"  {n:>3} appenders: throughput x{g.throughput / s.throughput:.2f}, "
                f"p99 {g.pct(0.99):.2f} ms vs {s.pct(0.99):.2f} ms"
            )


async def main(dsn_base: str, counts: list[int], seconds: float, pool: int) -> None:
    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
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
                results = []
                for n in counts:
                    for runner in (run_group, run_single):
                        await db.execute("TRUNCATE ledger, ledger_streams")
                        await db.execute("UPDATE ledger_head SET position = 0")
                        results.append(await runner(db, n, seconds))
                        r = results[-1]
                        print(f"  done {r.mode} x{n}: {r.throughput:.0f} ev/s", file=sys.stderr)
            finally:
                await db.close()
        finally:
            await admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"ledger append benchmark: {seconds:.0f}s per cell, pool {pool}, "
        f"python {sys.version.split()[0]}"
    )
    report(results)
    mean = statistics.mean(r.throughput for r in results if r.mode == "group")
    print(f"\nmean group throughput over all cells: {mean:.0f} events/s")


def cli() -> None:
    from edge.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--appenders", default="1,10,100")
    parser.add_argument("--pool", type=int, default=20, help="pool size (the baseline uses it)")
    parser.add_argument("--dsn", default=None, help="default: BFF_DATABASE_URL")
    args = parser.parse_args()
    dsn = args.dsn or load_settings().database_url
    counts = [int(c) for c in args.appenders.split(",")]
    trio.run(main, dsn, counts, args.seconds, args.pool)


if __name__ == "__main__":
    cli()
