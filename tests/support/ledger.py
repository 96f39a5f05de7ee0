"""Reading a BFF process's ledger from a test (the process writes it; the test only looks)."""

from __future__ import annotations

import json
from typing import Any

import trio


def ledger_subjects(database_url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """``(subject, payload)`` of every event of ``stream`` (``device:<id>``), oldest first."""
    import asyncpg
    import trio_asyncio

    async def fetch() -> list[tuple[str, dict[str, Any]]]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                rows = await trio_asyncio.aio_as_trio(conn.fetch)(
                    "SELECT subject, payload::text AS p FROM ledger WHERE stream = $1"
                    " ORDER BY position",
                    stream,
                )
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        return [(r["subject"], json.loads(r["p"])) for r in rows]

    return trio.run(fetch)
