"""The OperatorPreferences mirror against a real Postgres: round trip (columns and shortcut
overrides included), a row never moves back to an older version (two writers racing), the same
version only refreshes ``synced_at``, rows are per (tenant, operator), and an unreachable
Postgres surfaces as DatabaseUnavailable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import trio

from ledger.database import Database, DatabaseUnavailable
from ledger.preferences import PreferencesMirror
from schemas.preferences import MirroredPreferences

T = "tnt-a"
NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def prefs(
    version: int = 1,
    *,
    tenant: str = T,
    operator: str = "op-1",
    layout: str = "default",
    synced: datetime = NOW,
) -> MirroredPreferences:
    return MirroredPreferences(
        tenant=tenant,
        operator_id=operator,
        layout=layout,
        density="compact",
        columns={"arrivals": ["guest", "room"], "in-house": []},
        shortcuts={"ctrl+shift+j": "search", "f2": "help"},
        version=version,
        updated_at=NOW - timedelta(minutes=version),
        synced_at=synced,
    )


@pytest.fixture
def mirror(db: Database) -> PreferencesMirror:
    return PreferencesMirror(db)


async def test_round_trip(mirror: PreferencesMirror) -> None:
    assert await mirror.get(T, "op-1") is None
    stored = await mirror.put(prefs(3))
    assert stored == prefs(3)
    assert await mirror.get(T, "op-1") == prefs(3)


async def test_a_newer_version_replaces_an_older_one_never_the_reverse(
    mirror: PreferencesMirror,
) -> None:
    await mirror.put(prefs(2, layout="split"))
    newer = prefs(3, layout="wide", synced=NOW + timedelta(seconds=5))
    assert await mirror.put(newer) == newer
    late = prefs(2, layout="split", synced=NOW + timedelta(seconds=10))
    assert await mirror.put(late) == newer  # a slow writer's older answer changes nothing
    assert await mirror.get(T, "op-1") == newer


async def test_the_same_version_only_refreshes_synced_at(mirror: PreferencesMirror) -> None:
    await mirror.put(prefs(4))
    later = NOW + timedelta(minutes=7)
    confirmed = await mirror.put(prefs(4, synced=later))
    assert confirmed.synced_at == later
    assert await mirror.put(prefs(4, synced=NOW)) == confirmed  # synced_at never goes back


async def test_racing_writers_end_at_the_highest_version(mirror: PreferencesMirror) -> None:
    async def write(version: int) -> None:
        await mirror.put(prefs(version, layout=f"layout-{version}"))

    async with trio.open_nursery() as nursery:
        for version in (5, 1, 4, 2, 3):
            nursery.start_soon(write, version)
    final = await mirror.get(T, "op-1")
    assert final is not None and final.version == 5 and final.layout == "layout-5"


async def test_rows_are_per_tenant_and_operator(mirror: PreferencesMirror) -> None:
    mine = prefs(1)
    other_operator = prefs(7, operator="op-2", layout="other")
    other_tenant = msgspec.structs.replace(prefs(9, layout="foreign"), tenant="tnt-b")
    for row in (mine, other_operator, other_tenant):
        await mirror.put(row)
    assert await mirror.get(T, "op-1") == mine
    assert await mirror.get(T, "op-2") == other_operator
    assert await mirror.get("tnt-b", "op-1") == other_tenant
    assert await mirror.get("tnt-b", "op-2") is None


async def test_unreachable_postgres_is_database_unavailable(aio_loop: object) -> None:
    dead = Database("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.5)
    await dead.open()
    mirror = PreferencesMirror(dead)
    try:
        with pytest.raises(DatabaseUnavailable):
            await mirror.get(T, "op-1")
        with pytest.raises(DatabaseUnavailable):
            await mirror.put(prefs())
    finally:
        await dead.close()
