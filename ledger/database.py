"""Trio-facing Postgres pool: asyncpg behind the trio-asyncio bridge, every call under a deadline.

asyncpg is asyncio-only (see docs/ARCHITECTURE.md); this module is the one place that crosses
into asyncio for Postgres, so swapping the driver stays local.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import trio
import trio_asyncio

log = logging.getLogger("bff.ledger.database")


class DatabaseUnavailable(Exception):
    """Postgres did not answer within the deadline, or refused the connection."""


# What "the database is not there" looks like (as opposed to an error in a statement).
_UNAVAILABLE = (
    trio.TooSlowError,
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)


# asyncpg ships no type hints; a row behaves as a read-only mapping of column → value.
Record: TypeAlias = Mapping[str, Any]


class Connection:
    """One checked-out asyncpg connection, used from Trio."""

    def __init__(self, raw: Any, timeout: float) -> None:
        self._raw = raw
        self._timeout = timeout

    async def execute(self, sql: str, *args: object, timeout: float | None = None) -> str:
        result: str = await self._call(self._raw.execute, sql, *args, timeout=timeout)
        return result

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self._call(self._raw.executemany, sql, rows)

    async def fetch(self, sql: str, *args: object, timeout: float | None = None) -> list[Record]:
        rows: list[Record] = await self._call(self._raw.fetch, sql, *args, timeout=timeout)
        return rows

    async def fetchrow(
        self, sql: str, *args: object, timeout: float | None = None
    ) -> Record | None:
        row: Record | None = await self._call(self._raw.fetchrow, sql, *args, timeout=timeout)
        return row

    async def fetchval(self, sql: str, *args: object, timeout: float | None = None) -> Any:
        return await self._call(self._raw.fetchval, sql, *args, timeout=timeout)

    @asynccontextmanager
    async def transaction(self, isolation: str = "read_committed") -> AsyncIterator[Connection]:
        tx = self._raw.transaction(isolation=isolation)
        await self._call(tx.start)
        try:
            yield self
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                await trio_asyncio.aio_as_trio(tx.rollback)()
            raise
        else:
            await self._call(tx.commit)

    async def _call(self, fn: Any, *args: object, timeout: float | None = None) -> Any:
        with trio.fail_after(timeout or self._timeout):
            return await trio_asyncio.aio_as_trio(fn)(*args)


class Database:
    """A pool of Postgres connections; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, dsn: str, *, max_size: int = 10, timeout: float = 5.0):
        self.dsn = dsn
        self.timeout = timeout
        self._max = max_size
        self._pool: Any = None

    async def open(self) -> None:
        """Create the pool lazily: an unreachable server must not stop the process from starting."""
        self._pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(
            self.dsn,
            min_size=0,
            max_size=self._max,
            timeout=self.timeout,
            command_timeout=self.timeout,
            max_inactive_connection_lifetime=60.0,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with trio.move_on_after(self.timeout) as scope:
                await trio_asyncio.aio_as_trio(pool.close)()
            if scope.cancelled_caught:
                pool.terminate()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Connection]:
        """Check out one connection; a dead server surfaces as :class:`DatabaseUnavailable`."""
        if self._pool is None:
            raise DatabaseUnavailable("pool is not open")
        limit = timeout or self.timeout
        try:
            # Shielded, under its own deadline: cancelling asyncpg while it opens a connection
            # (TLS negotiation) makes trio-asyncio raise "unexpected connection_lost()" into the
            # loop and take the process down. A cancelled caller waits at most ``limit``.
            with trio.CancelScope(shield=True), trio.fail_after(limit):
                raw = await trio_asyncio.aio_as_trio(self._pool.acquire)(timeout=limit)
        except (trio.TooSlowError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            yield Connection(raw, limit)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(limit) as release:
                try:
                    await trio_asyncio.aio_as_trio(self._pool.release)(raw)
                except Exception as exc:  # the caller's own outcome stands
                    # asyncpg terminated the connection (a failed reset); the pool opens a new
                    # one when needed
                    log.warning(
                        "postgres connection dropped on release",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                    )
            if release.cancelled_caught:
                raw.terminate()

    async def fetchrow_once(self, sql: str, *args: object) -> Record | None:
        """One statement in one bridge crossing (acquire, run, release all on the asyncio side):
        for hot single-statement paths, where three crossings would cost more than the query."""
        if self._pool is None:
            raise DatabaseUnavailable("pool is not open")
        pool = self._pool

        async def run() -> Record | None:
            async with pool.acquire(timeout=self.timeout) as conn:
                row: Record | None = await conn.fetchrow(sql, *args, timeout=self.timeout)
                return row

        try:
            # Shielded for the reason given in ``connection``; bounded by the pool timeout.
            with trio.CancelScope(shield=True), trio.fail_after(self.timeout * 2):
                result: Record | None = await trio_asyncio.aio_as_trio(run)()
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        await trio.lowlevel.checkpoint_if_cancelled()
        return result

    async def fetch(self, sql: str, *args: object) -> list[Record]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: object) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: object) -> str:
        async with self.connection() as conn:
            return await conn.execute(sql, *args)

    async def ping(self, timeout: float) -> None:
        """Raise :class:`DatabaseUnavailable` unless Postgres answers ``SELECT 1`` in time."""
        try:
            async with self.connection(timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=timeout)
        except (trio.TooSlowError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


def contain_asyncio_errors(loop: Any) -> None:
    """Log an orphaned asyncio error instead of letting trio-asyncio raise it into its loop.

    trio-asyncio's default handler re-raises everything reported to the loop's exception
    handler into the loop's nursery, which ends the process. asyncpg reports there what it cannot
    raise to a caller: under overload "unexpected connection_lost() call" for connections this
    process already gave up on (a pool release that outlived its deadline, then ``terminate()``),
    and a plain warning, "Resetting connection with an active transaction", when a cancellation
    left one inside a transaction (it rolls back and carries on). Neither may end a worker (the
    fleet benchmark saw both workers restart at 50 tenants; CI saw the retention loop die), so
    they are logged with their context, as plain asyncio does. Call it right after
    ``trio_asyncio.open_loop()``, before anything touches Postgres.
    """

    def handle(_loop: Any, context: dict[str, Any]) -> None:
        error = context.get("exception")
        log.error(
            "asyncio error outside any caller (contained)",
            extra={
                "detail": str(context.get("message", ""))[:300],
                "error": f"{type(error).__name__}: {error}"[:300] if error else "",
            },
        )

    loop.set_exception_handler(handle)
