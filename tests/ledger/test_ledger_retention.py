"""Retention against a real Postgres: deletes only old *and published* rows, a prefix at a time,
safe while appending, and leaves a ledger that still verifies (positions, versions, relay)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import trio

from ledger.appendlog import Ledger
from ledger.audit import verify
from ledger.database import Database
from ledger.instruments import LedgerInstruments
from ledger.model import NewEvent
from ledger.retention import prune_once, run_retention
from tests.support.waiting import eventually

SUBJECT = "melmastoon.bff.backoffice.operator.activity.v1"
LATER = datetime.now(UTC) + timedelta(days=91)  # every row recorded now is past 90 days then
NINETY = timedelta(days=90)


def event(stream: str) -> NewEvent:
    return NewEvent(tenant="tnt-a", stream=stream, subject=SUBJECT, payload={})


@pytest.fixture
async def ledger(db: Database) -> AsyncIterator[Ledger]:
    led = Ledger(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        yield led
        nursery.cancel_scope.cancel()


async def publish_through(db: Database, position: int) -> None:
    await db.execute("UPDATE relay_cursor SET position = $1 WHERE name = 'bus'", position)


async def test_only_rows_older_than_the_period_go(db: Database, ledger: Ledger) -> None:
    for i in range(10):
        await ledger.append([event(f"device:{i % 2}")])
    await publish_through(db, 10)
    assert await prune_once(db, older_than=NINETY) == 0  # all recent
    metrics = LedgerInstruments()
    deleted = await prune_once(db, older_than=NINETY, now=LATER, batch=3, metrics=metrics)
    assert deleted == 10 and metrics.ledger_pruned._value.get() == 10
    assert await ledger.read_all() == []
    report = await verify(db)
    assert report.ok, report.problems
    assert report.pruned_through == 10 and report.head == 10
    # a fully pruned stream continues its versions, positions continue from the head
    [res] = await ledger.append([event("device:0")])
    assert (res.position, res.version) == (11, 6)
    assert (await verify(db)).ok


async def test_unpublished_rows_are_never_pruned(db: Database, ledger: Ledger) -> None:
    for _ in range(10):
        await ledger.append([event("device:x")])
    await publish_through(db, 4)
    assert await prune_once(db, older_than=NINETY, now=LATER, batch=2) == 4
    assert [r.position for r in await ledger.read_all()] == list(range(5, 11))
    report = await verify(db, max_lag_s=3600)
    assert report.ok, report.problems
    [row] = await db.fetch("SELECT pruned_through FROM ledger_retention")
    assert row["pruned_through"] == 4


async def test_pruning_while_appending_keeps_the_ledger_consistent(
    db: Database, ledger: Ledger
) -> None:
    for i in range(30):
        await ledger.append([event(f"device:{i % 3}")])
    await publish_through(db, 30)
    appended: list[int] = []

    async def appender(i: int) -> None:
        for _ in range(15):
            [res] = await ledger.append([event(f"device:{i % 3}")])
            appended.append(res.position)

    async def pruner() -> None:
        while await prune_once(db, older_than=NINETY, now=LATER, batch=2):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pruner)
        for i in range(6):
            nursery.start_soon(appender, i)
    # rows appended during the run were not published, so they all stay
    assert sorted(r.position for r in await ledger.read_all(limit=1000)) == list(range(31, 121))
    assert sorted(appended) == list(range(31, 121))
    await publish_through(db, 120)
    report = await verify(db)
    assert report.ok, report.problems


async def test_the_retention_loop_prunes_again_on_every_interval(
    db: Database, ledger: Ledger
) -> None:
    """``run_retention`` (what the service runs, not a single ``prune_once``): it prunes at
    start and again every interval, so rows that expire or get published later go too, without
    a restart, and never beyond what the relay published."""
    for i in range(6):
        await ledger.append([event(f"device:{i % 2}")])
    await publish_through(db, 6)

    async def pruned_through() -> int:
        return int(await db.fetchval("SELECT pruned_through FROM ledger_retention"))

    async def pruned_to(position: int) -> bool:
        return await pruned_through() == position

    metrics = LedgerInstruments()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                run_retention,
                db,
                older_than=timedelta(0),  # every row recorded before the run is old enough
                interval_s=0.05,
                batch=4,
                metrics=metrics,
            )
        )
        await eventually(partial(pruned_to, 6), 10)
        for i in range(5):
            await ledger.append([event(f"device:{i % 2}")])  # positions 7..11
        await publish_through(db, 8)
        # a later run prunes the newly published prefix, and stops at the relay cursor (from
        # 6, a batch of 4 would reach 10: seeing 8 means the cursor bounded the run)
        await eventually(partial(pruned_to, 8), 10)
        await publish_through(db, 11)
        await eventually(partial(pruned_to, 11), 10)
        nursery.cancel_scope.cancel()
    assert await ledger.read_all() == []
    assert metrics.ledger_pruned._value.get() == 11
    report = await verify(db)
    assert report.ok, report.problems
    assert (report.pruned_through, report.head) == (11, 11)
