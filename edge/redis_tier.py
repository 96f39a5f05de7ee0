"""Trio-facing Redis clients for the two tiers (cache and session), each call under a deadline.

redis-py's asyncio client runs behind the trio-asyncio bridge; every call goes through
:meth:`RedisTier.run`, so no asyncio code leaks into the rest of the service. Keys are always
built with :meth:`RedisTier.key`, which puts the deployment prefix and the tenant first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import trio
import trio_asyncio

from actors.ports import DependencyDown

T = TypeVar("T")

Client = aioredis.Redis
MAX_CONNECTIONS = 128


class TierUnavailable(DependencyDown):
    """The tier did not answer within its deadline or refused the connection (the Redis
    adapters' one "dependency is down" exception; the core sees it as ``DependencyDown``)."""

    def __init__(self, tier: str, detail: str) -> None:
        super().__init__(f"redis {tier} tier", detail)
        self.tier = tier


class RedisTier:
    """One Redis tier ("cache" or "session")."""

    def __init__(self, name: str, url: str, prefix: str, *, timeout: float = 1.0) -> None:
        self.name = name
        self.prefix = prefix
        self.timeout = timeout
        self._url = url
        self._client: Client | None = None

    @property
    def url(self) -> str:
        """The tier's URL, for a dedicated connection (pub/sub); never log it: it may hold a
        password."""
        return self._url

    async def open(self) -> None:
        # A blocking pool: when every connection is busy a caller waits for one (within its
        # deadline) instead of failing at once, which would look like the tier being down.
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            max_connections=MAX_CONNECTIONS,
            timeout=self.timeout,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            health_check_interval=15,
        )
        self._client = aioredis.Redis(connection_pool=pool)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with trio.CancelScope(shield=True), trio.move_on_after(self.timeout):
                await trio_asyncio.aio_as_trio(client.aclose)()

    def key(self, tenant: str, *parts: str) -> str:
        """A key scoped to the deployment prefix and the tenant: ``<prefix>:<tenant>:<parts…>``."""
        if not tenant:
            raise ValueError("every key carries a tenant")
        return ":".join((self.prefix, tenant, *parts))

    def global_key(self, *parts: str) -> str:
        """A key not owned by a tenant (flags, instance registry); never holds tenant data."""
        return ":".join((self.prefix, "_global", *parts))

    async def run(self, op: Callable[[Client], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``op(client)`` on the asyncio side under a deadline."""
        if self._client is None:
            raise TierUnavailable(self.name, "client is not open")
        client = self._client

        async def call() -> T:
            return await op(client)

        try:
            with trio.fail_after(timeout or self.timeout):
                result: T = await trio_asyncio.aio_as_trio(call)()
                return result
        except (trio.TooSlowError, OSError, redis.exceptions.ConnectionError) as exc:
            raise TierUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc
        except redis.exceptions.TimeoutError as exc:
            raise TierUnavailable(self.name, f"timeout: {exc}") from exc

    async def ping(self, timeout: float) -> None:
        await self.run(lambda r: _ping(r), timeout)


def text(value: bytes | str | object) -> str:
    """A Redis reply as text (redis-py returns bytes unless asked to decode)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def _ping(client: Any) -> bool:
    return bool(await client.ping())
