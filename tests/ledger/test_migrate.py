"""Migrations are versioned, recorded, idempotent and safe to run concurrently."""

import trio

from ledger.database import Database
from ledger.migrate import available_migrations, migrate


async def test_migrations_recorded_once(db: Database) -> None:
    # The fixture already migrated this database: running again applies nothing.
    assert await migrate(db) == []
    rows = await db.fetch("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in available_migrations()]


async def test_concurrent_migrators_apply_each_version_once(
    aio_loop: object, empty_database_url: str
) -> None:
    db = Database(empty_database_url, max_size=5, timeout=30)
    await db.open()
    applied: list[list[int]] = []

    async def run() -> None:
        applied.append(await migrate(db))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(run)
        flat = sorted(v for batch in applied for v in batch)
        assert flat == [m.version for m in available_migrations()]
        assert await db.fetchval("SELECT count(*) FROM ledger") == 0
    finally:
        await db.close()


def test_migration_files_are_numbered_densely() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))
