"""The ledger store against a real Postgres: group commit, optimistic concurrency, dedupe on
retry, gap-free commit order with several writers, and failures surfacing as LedgerUnavailable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import trio

from ledger.appendlog import DuplicateEventId, Ledger, LedgerRejected, LedgerUnavailable
from ledger.database import Database
from ledger.instruments import LedgerInstruments
from ledger.model import NewEvent, VersionConflict
from tests.support.procs import PrivatePostgres

SUBJECT = "melmastoon.bff.backoffice.operator.activity.v1"


def event(stream: str = "device:d1", tenant: str = "tnt-a", **kw: object) -> NewEvent:
    return NewEvent(tenant=tenant, stream=stream, subject=SUBJECT, payload={"n": 1}, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def ledger(db: Database) -> AsyncIterator[Ledger]:
    led = Ledger(db, metrics=LedgerInstruments())
    async with trio.open_nursery() as nursery:
        await nursery.start(led.run)
        yield led
        nursery.cancel_scope.cancel()


async def test_append_returns_durable_positions_and_versions(ledger: Ledger) -> None:
    first = await ledger.append([event(), event()])
    second = await ledger.append([event("device:d2")])
    assert [(r.position, r.version) for r in first] == [(1, 1), (2, 2)]
    assert [(r.position, r.version) for r in second] == [(3, 1)]
    rows = await ledger.read_all()
    assert [r.position for r in rows] == [1, 2, 3]
    assert rows[0].tenant == "tnt-a" and rows[0].stream == "device:d1"
    assert msgspec.json.decode(rows[0].payload) == {"n": 1}
    assert await ledger.stream_version("tnt-a", "device:d1") == 2
    assert await ledger.stream_version("tnt-b", "device:d1") == 0
    assert await ledger.head() == 3


async def test_metadata_round_trips(ledger: Ledger) -> None:
    raw = msgspec.Raw(b'{"widget":"arrivals"}')
    ev = NewEvent(
        tenant="tnt-a",
        stream="device:d9",
        subject=SUBJECT,
        payload=raw,
        operator_id="op-1",
        device_id="d9",
        request_id="req-1",
    )
    await ledger.append([ev])
    [row] = await ledger.read_stream("tnt-a", "device:d9")
    assert (row.event_id, row.operator_id, row.device_id, row.request_id) == (
        ev.event_id,
        "op-1",
        "d9",
        "req-1",
    )
    assert bytes(row.payload) == b'{"widget": "arrivals"}'  # jsonb normalises spacing
    assert row.occurred_at <= row.recorded_at


async def test_concurrent_appends_share_batches_and_stay_gap_free(ledger: Ledger) -> None:
    results: dict[int, list[int]] = {}

    async def appender(i: int) -> None:
        positions = []
        for _ in range(10):
            [res] = await ledger.append([event(f"device:d{i}")])
            positions.append(res.position)
        results[i] = positions

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(appender, i)
    everything = sorted(p for ps in results.values() for p in ps)
    assert everything == list(range(1, 501))
    assert ledger.batches < 500  # group commit: fewer transactions than appends
    for i, positions in results.items():
        assert positions == sorted(positions)
        stream = await ledger.read_stream("tnt-a", f"device:d{i}")
        assert [r.version for r in stream] == list(range(1, 11))


async def test_stale_expected_version_fails_only_that_request(ledger: Ledger) -> None:
    await ledger.append([event()])
    outcomes: dict[str, object] = {}

    async def attempt(name: str, ev: NewEvent) -> None:
        try:
            outcomes[name] = await ledger.append([ev])
        except VersionConflict as exc:
            outcomes[name] = exc

    # Both saw version 1; only one can win. A third, unrelated append is unaffected.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, "a", event(expected_version=1))
        nursery.start_soon(attempt, "b", event(expected_version=1))
        nursery.start_soon(attempt, "other", event("device:d2", expected_version=0))
    conflicts = [k for k, v in outcomes.items() if isinstance(v, VersionConflict)]
    assert len(conflicts) == 1 and conflicts[0] in ("a", "b")
    assert not isinstance(outcomes["other"], Exception)
    assert await ledger.stream_version("tnt-a", "device:d1") == 2
    assert [r.position for r in await ledger.read_all()] == [1, 2, 3]


async def test_request_is_all_or_nothing(ledger: Ledger) -> None:
    await ledger.append([event("device:x")])
    with pytest.raises(VersionConflict):
        await ledger.append(
            [event("device:y", expected_version=0), event("device:x", expected_version=0)]
        )
    assert await ledger.stream_version("tnt-a", "device:y") == 0
    assert await ledger.head() == 1


async def test_reappending_the_same_events_returns_the_original_positions(ledger: Ledger) -> None:
    events = [event(expected_version=0), event()]
    first = await ledger.append(events)
    again = await ledger.append(events)  # e.g. a retry after LedgerUnavailable
    assert again == first
    assert await ledger.head() == 2
    clash = NewEvent(
        tenant="tnt-a",
        stream="device:other",
        subject=SUBJECT,
        payload={},
        event_id=events[0].event_id,
    )
    with pytest.raises(DuplicateEventId):
        await ledger.append([clash])


async def test_a_rejected_payload_fails_only_its_own_request(ledger: Ledger) -> None:
    bad = NewEvent(tenant="tnt-a", stream="device:d1", subject=SUBJECT, payload={"s": "nul\x00"})
    outcomes: list[object] = []

    async def attempt(ev: NewEvent) -> None:
        try:
            outcomes.append(await ledger.append([ev]))
        except LedgerRejected as exc:
            outcomes.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, bad)
        for i in range(5):
            nursery.start_soon(attempt, event(f"device:ok{i}"))
    assert sum(isinstance(o, LedgerRejected) for o in outcomes) == 1
    assert [r.position for r in await ledger.read_all()] == [1, 2, 3, 4, 5]
    with pytest.raises(msgspec.DecodeError):
        await ledger.append(
            [NewEvent(tenant="t", stream="s:1", subject=SUBJECT, payload=msgspec.Raw(b"{not json"))]
        )


async def test_two_writers_interleave_without_gaps_for_a_tailing_reader(
    db: Database, database_url: str
) -> None:
    """Two ledgers on separate pools stand for two BFF instances; a reader tailing with
    ``position > last`` must see every row exactly once, in position order."""
    other_db = Database(database_url, max_size=5, timeout=10)
    await other_db.open()
    one, two = Ledger(db), Ledger(other_db)
    seen: list[int] = []
    total = 400
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(one.run)
            await nursery.start(two.run)

            async def tail() -> None:
                last = 0
                with trio.fail_after(30):
                    while len(seen) < total:
                        rows = await one.read_all(after_position=last, limit=50)
                        seen.extend(r.position for r in rows)
                        last = rows[-1].position if rows else last
                        await trio.lowlevel.checkpoint()

            async def appender(led: Ledger, i: int) -> None:
                for _ in range(20):
                    await led.append([event(f"device:{i}")])

            async with trio.open_nursery() as inner:
                inner.start_soon(tail)
                for i in range(20):
                    inner.start_soon(appender, one if i % 2 else two, i)
            nursery.cancel_scope.cancel()
    finally:
        await other_db.close()
    assert seen == list(range(1, total + 1))


async def test_postgres_down_gives_ledger_unavailable_then_recovers(aio_loop: object) -> None:
    pg = PrivatePostgres()
    try:
        url = pg.url
        database = Database(url, max_size=4, timeout=2)
        await database.open()
        from ledger.migrate import migrate

        await migrate(database)
        led = Ledger(database, call_timeout=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(led.run)
            await led.append([event()])
            await trio.to_thread.run_sync(pg.stop)
            with pytest.raises(LedgerUnavailable):
                await led.append([event()], timeout=1.0)
            await trio.to_thread.run_sync(pg.start)
            with trio.fail_after(20):
                while True:
                    try:
                        [res] = await led.append([event()], timeout=2.0)
                        break
                    except LedgerUnavailable:
                        continue
            # the unacknowledged append may or may not be there; positions stay dense
            assert res.position in (2, 3)
            assert [r.position for r in await led.read_all()] == list(range(1, res.position + 1))
            nursery.cancel_scope.cancel()
        await database.close()
    finally:
        await trio.to_thread.run_sync(pg.destroy)


async def test_unique_ids_are_independent_per_event(ledger: Ledger) -> None:
    ids = {uuid.uuid4() for _ in range(3)}
    results = await ledger.append(
        [NewEvent(tenant="t", stream="s:1", subject=SUBJECT, payload={}, event_id=i) for i in ids]
    )
    assert [r.version for r in results] == [1, 2, 3]
