"""Versioned SQL migrations: ``ledger/migrations/NNNN_name.sql``, applied in order, once each.

Applied versions are recorded in ``schema_version``. A session advisory lock makes concurrent
migrators (several instances starting at once) safe: the second waits, then finds nothing left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import trio
import trio_asyncio

from ledger.database import Database

MIGRATION_LOCK = 0x6C656467  # "ledg"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("ledger.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(db: Database) -> list[int]:
    """Apply every pending migration; return the versions applied by this call."""
    applied_now: list[int] = []
    async with db.connection(timeout=60) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK, timeout=60)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in available_migrations():
                async with conn.transaction():
                    done = await conn.fetchval(
                        "SELECT 1 FROM schema_version WHERE version = $1", migration.version
                    )
                    if done:
                        continue
                    await conn.execute(migration.sql, timeout=60)
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                    applied_now.append(migration.version)
        finally:
            with trio.CancelScope(shield=True):
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist; True when it was created."""
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", name):
        raise ValueError(f"unsupported database name {name!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(admin, timeout=10)
    try:
        exists = await trio_asyncio.aio_as_trio(conn.fetchval)(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
        if exists:
            return False
        try:
            await trio_asyncio.aio_as_trio(conn.execute)(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()


async def admin_sql(admin_url: str, sql: str) -> None:
    """Run one statement (``CREATE DATABASE`` …) on its own connection, in its own trio-asyncio
    loop: for scripts and test fixtures that manage whole databases from plain ``trio.run``."""
    async with trio_asyncio.open_loop():
        conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(admin_url, timeout=10)
        try:
            await trio_asyncio.aio_as_trio(conn.execute)(sql)
        finally:
            await trio_asyncio.aio_as_trio(conn.close)()


async def migrate_url(dsn: str, *, create: bool = False) -> list[int]:
    """Apply the migrations to the database at ``dsn`` (creating it first if asked); returns
    the versions applied. Needs ``trio_asyncio.open_loop()`` around it."""
    if create:
        await ensure_database(dsn)
    db = Database(dsn, timeout=30)
    await db.open()
    try:
        return await migrate(db)
    finally:
        await db.close()
