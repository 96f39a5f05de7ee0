"""Google ID tokens for upstream calls (production mode): minted by the metadata server for
audience = the upstream's URL, cached per audience until shortly before they expire.

``GET {metadata}/computeMetadata/v1/instance/service-accounts/default/identity?audience=…``
with ``Metadata-Flavor: Google``; concurrent callers for one audience share one fetch. In local
mode there is no token (:class:`NoIdTokens`).
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Protocol

import httpx
import msgspec
import trio

from edge.metrics import Metrics

log = logging.getLogger("bff.upstream.idtoken")
IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
REFRESH_MARGIN_S = 60.0


class IdTokenUnavailable(Exception):
    """The metadata server gave no usable token."""


class IdTokens(Protocol):
    async def token(self, audience: str) -> str | None:
        """An ID token for ``audience`` (None: send no Authorization header)."""
        ...


class NoIdTokens:
    """Local mode: upstreams (the simulator) need no service identity."""

    async def token(self, audience: str) -> str | None:
        return None


class _Times(msgspec.Struct):
    exp: float


class MetadataIdTokens:
    def __init__(self, http: httpx.AsyncClient, metadata_url: str, metrics: Metrics) -> None:
        self._http = http
        self._url = metadata_url.rstrip("/") + IDENTITY_PATH
        self._metrics = metrics
        self._cache: dict[str, tuple[str, float]] = {}  # audience → (token, refresh at)
        self._locks: dict[str, trio.Lock] = {}

    async def token(self, audience: str) -> str | None:
        cached = self._cache.get(audience)
        if cached is not None and trio.current_time() < cached[1]:
            return cached[0]
        lock = self._locks.setdefault(audience, trio.Lock())
        async with lock:
            cached = self._cache.get(audience)
            if cached is not None and trio.current_time() < cached[1]:
                return cached[0]
            token, lifetime = await self._fetch(audience)
            margin = min(REFRESH_MARGIN_S, lifetime / 4)
            self._cache[audience] = (token, trio.current_time() + lifetime - margin)
            return token

    async def _fetch(self, audience: str) -> tuple[str, float]:
        try:
            answer = await self._http.get(
                self._url,
                params={"audience": audience, "format": "full"},
                headers={"Metadata-Flavor": "Google"},
            )
        except httpx.HTTPError as exc:
            self._metrics.upstream_id_tokens.labels("error").inc()
            raise IdTokenUnavailable(f"metadata server unreachable: {type(exc).__name__}") from None
        if answer.status_code != 200:
            self._metrics.upstream_id_tokens.labels("error").inc()
            raise IdTokenUnavailable(f"metadata server answered {answer.status_code}")
        token = answer.text.strip()
        lifetime = _lifetime(token)
        self._metrics.upstream_id_tokens.labels("fetched").inc()
        return token, lifetime


def _lifetime(token: str) -> float:
    """Seconds the token stays valid from now, from its ``exp``/``iat`` (read, not verified:
    the token is for the upstream to verify; we only need to know when to fetch another)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise IdTokenUnavailable("metadata server returned something that is not a JWT")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        times = msgspec.json.decode(raw, type=_Times)
    except (ValueError, msgspec.DecodeError):
        raise IdTokenUnavailable("metadata server token has no readable exp") from None
    lifetime = times.exp - time.time()
    if lifetime <= 0:
        raise IdTokenUnavailable("metadata server returned an expired token")
    return lifetime
