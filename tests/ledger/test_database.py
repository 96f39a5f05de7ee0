"""The Postgres adapter's connection checkout: whatever state the caller leaves a connection in,
giving it back never raises into the caller (its own outcome stands) and the pool stays usable."""

from __future__ import annotations

import logging

import pytest

from ledger.database import Database


async def test_a_connection_left_inside_a_transaction_is_dropped_not_raised(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """What a cancellation between ``BEGIN`` and the caller's ``try`` leaves behind: asyncpg
    reports "Resetting connection with an active transaction" to the loop's exception handler,
    which trio-asyncio turned into a crash of the loop (it ended the retention loop once in CI);
    with ``contain_asyncio_errors`` (the ``aio_loop`` fixture installs it, as the service does)
    it is logged and the connection is rolled back and reused."""
    with caplog.at_level(logging.ERROR, logger="bff.ledger.database"):
        async with db.connection() as conn:
            await conn.execute("BEGIN")  # never committed nor rolled back by the caller
    assert any("active transaction" in r.__dict__.get("detail", "") for r in caplog.records)
    assert await db.fetchval("SELECT 1") == 1  # the pool still serves
