"""Access-token verification against iam's JWKS.

Only ES256 signatures by a key from iam's JWKS count: ``jwk``/``jku``/``x5u``/``x5c`` headers are
ignored (an access token never brings its own key). The key set is cached; a token signed with an
unknown ``kid`` (key rotation) triggers one refetch, at most once per ``min_refetch_s``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import msgspec
import trio
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from schemas.upstream.iam import AccessTokenClaims, Jwks

log = logging.getLogger("bff.auth.tokens")

MAX_TOKEN_BYTES = 8192
FetchJwks = Callable[[], Awaitable[Jwks]]


class TokenRejected(Exception):
    """The token is expired, not signed by iam, or not meant for us (message: which)."""


class KeySetUnavailable(Exception):
    """iam's key set could not be fetched and none is cached."""


class KeySet:
    """iam's public keys by ``kid``, refetched on expiry or on an unknown ``kid``."""

    def __init__(self, fetch: FetchJwks, *, ttl_s: float = 600.0, min_refetch_s: float = 5.0):
        self._fetch = fetch
        self._ttl = ttl_s
        self._min_refetch = min_refetch_s
        self._keys: dict[str, jwk.JWK] = {}
        self._fetched_at = -float("inf")
        self._lock = trio.Lock()
        self.refetches = 0

    async def key(self, kid: str) -> jwk.JWK | None:
        now = trio.current_time()
        if now - self._fetched_at > self._ttl:
            await self._refresh(force=True)
        found = self._keys.get(kid)
        if found is None and trio.current_time() - self._fetched_at >= self._min_refetch:
            await self._refresh(force=False)
            found = self._keys.get(kid)
        return found

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            if not force and trio.current_time() - self._fetched_at < self._min_refetch:
                return  # another task refetched while we waited
            try:
                keyset = await self._fetch()
            except Exception as exc:
                if not self._keys:
                    raise KeySetUnavailable(str(exc)) from exc
                log.warning("jwks refetch failed; keeping cached keys", extra={"error": str(exc)})
                return
            self._keys = {k.kid: jwk.JWK(**msgspec.to_builtins(k)) for k in keyset.keys}
            self._fetched_at = trio.current_time()
            self.refetches += 1


class TokenVerifier:
    """Verifies access tokens; a token verified once is remembered (by its SHA-256) until it
    expires, since a desktop sends the same token with every request for its lifetime.
    Revocation is checked separately on every request (the session tier), not here."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = 5.0,
        cache_size: int = 10_000,
    ):
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._verified: OrderedDict[bytes, AccessTokenClaims] = OrderedDict()
        self._cache_size = cache_size

    async def verify(
        self, token: str, *, now: float, allow_expired: bool = False
    ) -> AccessTokenClaims:
        """The token's claims once iam's signature, ``iss``, ``aud`` and times check out.

        ``allow_expired`` skips only the ``exp`` check: the refresh route accepts the device's
        last token after it expired, to learn which session it is about (API contract §2).
        """
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            self._check_times(cached, now, allow_expired)
            self._verified.move_to_end(digest)
            return cached
        claims = await self._verify(token, now, allow_expired)
        self._verified[digest] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    def _check_times(self, claims: AccessTokenClaims, now: float, allow_expired: bool) -> None:
        if not allow_expired and claims.exp <= now - self._leeway:
            raise TokenRejected("token expired")
        if claims.iat > now + self._leeway:
            raise TokenRejected("token issued in the future")

    async def _verify(self, token: str, now: float, allow_expired: bool) -> AccessTokenClaims:
        parsed = _parse(token)
        try:
            header = parsed.jose_header  # checks ``crit`` (unknown names are refused)
        except (JWException, ValueError, TypeError):
            raise TokenRejected("token header is not acceptable") from None
        kid = header.get("kid") if isinstance(header, dict) else None
        if not isinstance(kid, str) or header.get("alg") != "ES256":
            raise TokenRejected("token must be ES256 with a kid")
        key = await self._keys.key(kid)
        if key is None:
            raise TokenRejected("token signed by an unknown key")
        try:
            parsed.verify(key, alg="ES256")
            claims = msgspec.json.decode(parsed.payload, type=AccessTokenClaims)
        except (JWException, ValueError, TypeError, msgspec.DecodeError):
            raise TokenRejected("token signature or claims invalid") from None
        if claims.iss != self._issuer or claims.aud != self._audience:
            raise TokenRejected("token not issued for this service")
        self._check_times(claims, now, allow_expired)
        return claims


def _parse(token: str) -> jws.JWS:
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise TokenRejected("token must be a compact JWT")
    parsed = jws.JWS()
    parsed.allowed_algs = ["ES256"]
    try:
        parsed.deserialize(token)
    except (JWException, ValueError, TypeError):
        raise TokenRejected("token is not a well-formed JWT") from None
    return parsed
