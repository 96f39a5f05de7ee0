"""DeviceSyncStatus against a real Postgres: the cursor only moves forward (also when many
advances race), a handshake's reset is a compare-and-set on the revision, the heartbeat's sync
fields and the offline-queue hint are stored (a duplicate heartbeat changes nothing), and a
tenant's rows are its own."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
import trio

from ledger.database import Database
from ledger.device_status import CursorMove, DeviceStatusStore

T, D = "tnt-a", "dev-1"


@pytest.fixture
def store(db: Database) -> DeviceStatusStore:
    return DeviceStatusStore(db)


def now() -> datetime:
    return datetime.now(UTC)


async def advance(store: DeviceStatusStore, cursor: int, device: str = D) -> CursorMove:
    return await store.advance_cursor(
        T, device, cursor, at=now(), source="device", operator_id="op-1"
    )


async def test_cursor_moves_forward_only(store: DeviceStatusStore) -> None:
    first = await advance(store, 10)
    assert first.changed and first.status.cursor_version == 10
    assert (first.status.cursor_revision, first.status.cursor_previous) == (1, None)
    assert first.status.cursor_source == "device"

    for older in (9, 0, 10):
        stale = await advance(store, older)
        assert not stale.changed
        assert (stale.status.cursor_version, stale.status.cursor_revision) == (10, 1)

    newer = await advance(store, 4200)
    assert newer.changed
    assert (newer.status.cursor_version, newer.status.cursor_previous) == (4200, 10)
    assert newer.status.cursor_revision == 2
    stored = await store.get(T, D)
    assert stored is not None and stored.cursor_version == 4200


async def test_racing_advances_end_at_the_largest_and_never_go_back(
    store: DeviceStatusStore,
) -> None:
    values = random.Random(13).sample(range(1, 10**9), 120)
    answers: list[tuple[int, CursorMove]] = []

    async def one(value: int) -> None:
        answers.append((value, await advance(store, value)))

    async with trio.open_nursery() as nursery:
        for value in values:
            nursery.start_soon(one, value)

    final = await store.get(T, D)
    assert final is not None and final.cursor_version == max(values)
    for asked, move in answers:  # never behind what was asked
        assert move.status.cursor_version is not None and move.status.cursor_version >= asked
    # Every change has its own revision, and in revision order the cursor only grew, each
    # change knowing the cursor it replaced.
    changes = sorted((m.status for _, m in answers if m.changed), key=lambda s: s.cursor_revision)
    assert [s.cursor_revision for s in changes] == list(range(1, len(changes) + 1))
    assert final.cursor_revision == len(changes)
    for before, after in itertools.pairwise(changes):
        assert after.cursor_previous == before.cursor_version
        assert after.cursor_version is not None and before.cursor_version is not None
        assert after.cursor_version > before.cursor_version


async def test_reset_is_a_compare_and_set_on_the_revision(store: DeviceStatusStore) -> None:
    await advance(store, 500)
    held = await store.get(T, D)
    assert held is not None and held.cursor_revision == 1

    stale = await store.reset_cursor(T, D, 300, expected_revision=0, at=now(), operator_id="op-1")
    assert not stale.changed and stale.status.cursor_version == 500

    reset = await store.reset_cursor(T, D, 300, expected_revision=1, at=now(), operator_id="op-1")
    assert reset.changed  # sync-service's authoritative value wins, even downwards
    status = reset.status
    assert (status.cursor_version, status.cursor_previous, status.cursor_revision) == (300, 500, 2)
    assert status.cursor_source == "sync_service"

    same = await store.reset_cursor(T, D, 300, expected_revision=2, at=now(), operator_id=None)
    assert not same.changed and same.status.cursor_revision == 2

    first = await store.reset_cursor(
        T, "dev-new", 77, expected_revision=0, at=now(), operator_id=None
    )
    assert first.changed and first.status.cursor_version == 77  # a device seen the first time


async def test_heartbeat_sync_fields_and_duplicates(store: DeviceStatusStore) -> None:
    online = now() - timedelta(minutes=20)

    async def beat(command: str, **fields: object) -> tuple[int, bool]:
        outcome = await store.record_heartbeat(
            T,
            D,
            at=now(),
            app_version="1.4.0",
            operator_id="op-1",
            command_id=command,
            **fields,  # type: ignore[arg-type]
        )
        return outcome.status.heartbeat_count, outcome.duplicate

    assert await beat("c1", queued_actions=7, online_since=online) == (1, False)
    status = await store.get(T, D)
    assert status is not None
    assert (status.queued_actions, status.online_since) == (7, online)
    assert status.hint_at is not None

    assert await beat("c1", queued_actions=99, online_since=now()) == (1, True)
    status = await store.get(T, D)
    assert status is not None and (status.queued_actions, status.online_since) == (7, online)

    assert await beat("c2") == (2, False)  # fields left out keep their values
    status = await store.get(T, D)
    assert status is not None and (status.queued_actions, status.online_since) == (7, online)


async def test_queue_hint_stored_newest_wins_and_zero_clears(store: DeviceStatusStore) -> None:
    oldest = now() - timedelta(hours=2)
    later = now()
    stored = await store.record_queue_hint(
        T, D, queued_actions=12, oldest_queued_at=oldest, at=later, operator_id="op-1"
    )
    assert (stored.queued_actions, stored.oldest_queued_at, stored.hint_at) == (12, oldest, later)

    earlier = later - timedelta(seconds=5)  # e.g. another instance's slower request
    kept = await store.record_queue_hint(
        T, D, queued_actions=3, oldest_queued_at=None, at=earlier, operator_id="op-1"
    )
    assert (kept.queued_actions, kept.hint_at) == (12, later)

    await store.record_heartbeat(
        T, D, at=now(), app_version="1.4.0", operator_id=None, command_id="c9", queued_actions=0
    )
    drained = await store.get(T, D)
    assert drained is not None
    assert (drained.queued_actions, drained.oldest_queued_at) == (0, None)


async def test_rows_are_per_tenant(store: DeviceStatusStore) -> None:
    await advance(store, 10)
    other = await store.advance_cursor("tnt-b", D, 3, at=now(), source="device", operator_id=None)
    assert other.changed and other.status.cursor_version == 3
    mine = await store.get(T, D)
    assert mine is not None and mine.cursor_version == 10
