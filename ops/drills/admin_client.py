"""A small client of the BFF admin endpoint (edge/admin.py), every call under a deadline.

The admin server refuses a ``POST`` that is not ``Content-Type: application/json`` (415) and any
request whose ``Host`` is not ``127.0.0.1``/``localhost``/``[::1]`` with its port (421): every
body here is sent as JSON, and ``BFF_ADMIN_URL`` must name the server by such a name.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:8081"


def admin_url(explicit: str | None) -> str:
    return (explicit or os.environ.get("BFF_ADMIN_URL") or DEFAULT_ADMIN_URL).rstrip("/")


class AdminError(Exception):
    """The admin endpoint answered with an error or not at all."""


class AdminClient:
    def __init__(self, base_url: str, *, timeout: float = 5.0, connections: int = 64) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_actors(self, kind: str | None = None, tenant: str | None = None) -> Any:
        params = {k: v for k, v in (("kind", kind), ("tenant", tenant)) if v}
        params["limit"] = "100000"
        return await self._json("GET", "/admin/actors", params=params)

    async def kill(self, selection: dict[str, Any]) -> list[dict[str, str]]:
        body = await self._json("POST", "/admin/actors/kill", json=selection)
        killed: list[dict[str, str]] = body["killed"]
        return killed

    async def ask(
        self, kind: str, tenant: str, actor_id: str, message: dict[str, Any], *, timeout: float
    ) -> httpx.Response:
        """Raw response (callers distinguish retryable 503s); transport errors propagate."""
        return await self._http.post(
            f"/admin/actors/{kind}/{tenant}/{actor_id}/ask",
            json=message,
            params={"timeout": str(timeout)},
            timeout=timeout + 2.0,
        )

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise AdminError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()
