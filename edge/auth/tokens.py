"""Access-token (and step-up attestation) verification against iam's JWKS (RFC 8725).

Only the compact serialisation, only ES256, only a key from iam's JWKS that may sign ES256
(``use`` ``sig`` or absent, ``alg`` ``ES256`` or absent, a P-256 EC key): ``jwk``/``jku``/``x5u``/
``x5c`` headers are ignored (a token never brings its own key). The header ``typ`` says what a
token is (``at+jwt``, RFC 9068 §4; ``step-up+jwt`` for an attestation), so one kind is never
accepted as the other.

The key set is cached for ``ttl_s`` and refreshed by one task at a time: the others keep using
the keys they have (stale keys are served while a refresh is in flight), and a task that waited
for the refresh does not fetch again. A token signed with an unknown ``kid`` (key rotation)
triggers a refetch at most once per ``min_refetch_s`` per process; a failed fetch is recorded
and backs off (``backoff_s`` doubling up to ``max_backoff_s``), so neither an unauthenticated
caller with made-up ``kid``s nor an iam outage turns every request into a fetch.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import trio
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from edge.auth.compact import is_canonical, is_compact
from schemas.upstream.iam import AccessTokenClaims, AttestationClaims, Jwk, Jwks

log = logging.getLogger("bff.auth.tokens")

MAX_TOKEN_BYTES = 8192
FetchJwks = Callable[[], Awaitable[Jwks]]
TYP_ACCESS = "at+jwt"  # RFC 9068 §2.1 (``application/at+jwt`` is the same type)
TYP_ATTESTATION = "step-up+jwt"
ALG = "ES256"

_Claims = TypeVar("_Claims", AccessTokenClaims, AttestationClaims)


class TokenRejected(Exception):
    """The token is expired, not signed by iam, or not meant for us (message: which)."""


class KeySetUnavailable(Exception):
    """iam's key set could not be fetched and none was ever fetched."""


class KeySet:
    """iam's public signing keys by ``kid``, refreshed on expiry or on an unknown ``kid``."""

    def __init__(
        self,
        fetch: FetchJwks,
        *,
        ttl_s: float = 600.0,
        min_refetch_s: float = 5.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ):
        self._fetch = fetch
        self._ttl = ttl_s
        self._min_refetch = min_refetch_s
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._keys: dict[str, jwk.JWK] = {}
        self._fetched_at = -float("inf")  # last successful fetch
        self._tried_at = -float("inf")  # last attempt, successful or not
        self._failures = 0  # consecutive failed attempts
        self._attempts = 0  # completed attempts: tells a waiter that someone fetched meanwhile
        self._last_error = ""
        self._lock = trio.Lock()
        self.refetches = 0  # successful fetches
        self.failed_fetches = 0

    async def key(self, kid: str) -> jwk.JWK | None:
        """The key ``kid``, or None when iam does not publish it (after a refetch if allowed).

        Raises :class:`KeySetUnavailable` only when no key set was ever fetched."""
        found = self._keys.get(kid)
        if found is not None:
            if self._expired() and not self._lock.locked():
                await self._refresh(self._attempts, unknown_kid=False)
                return self._keys.get(kid)
            return found  # fresh, or stale while another task refreshes
        await self._refresh(self._attempts, unknown_kid=True)
        found = self._keys.get(kid)
        if found is None and self._fetched_at == -float("inf"):
            raise KeySetUnavailable(self._last_error or "iam's key set was never fetched")
        return found

    def _expired(self) -> bool:
        return trio.current_time() - self._fetched_at > self._ttl

    def _backoff_until(self) -> float:
        if not self._failures:
            return -float("inf")
        delay = min(self._max_backoff, self._backoff * 2.0 ** min(self._failures - 1, 32))
        return self._tried_at + delay

    async def _refresh(self, seen: int, *, unknown_kid: bool) -> None:
        """Fetch unless another task did (or tried) since the caller looked (``seen``), a
        failure is being backed off, or an unknown ``kid`` already refetched too recently."""
        async with self._lock:
            now = trio.current_time()
            if self._attempts != seen:
                return  # another task fetched, or tried, while we waited
            if now < self._backoff_until():
                return
            if unknown_kid and not self._expired() and now - self._tried_at < self._min_refetch:
                return
            try:
                keyset = await self._fetch()
            except Exception as exc:
                self._failures += 1
                self.failed_fetches += 1
                self._tried_at = trio.current_time()
                self._attempts += 1
                self._last_error = str(exc) or type(exc).__name__
                log.warning(
                    "jwks fetch failed; keeping the cached keys",
                    extra={"error": self._last_error, "failures": self._failures},
                )
                return
            self._keys = _usable_keys(keyset)
            self._fetched_at = self._tried_at = trio.current_time()
            self._failures = 0
            self._attempts += 1
            self.refetches += 1


def _usable_keys(keyset: Jwks) -> dict[str, jwk.JWK]:
    """The keys that may verify an ES256 signature; others are skipped (RFC 8725 §3.1)."""
    keys: dict[str, jwk.JWK] = {}
    for published in keyset.keys:
        if not _signs_es256(published):
            log.info("jwks key not usable for ES256 signatures", extra={"kid": published.kid})
            continue
        try:
            keys[published.kid] = jwk.JWK(**msgspec.to_builtins(published))
        except (JWException, ValueError, TypeError):
            log.warning("jwks key cannot be imported", extra={"kid": published.kid})
    return keys


def _signs_es256(published: Jwk) -> bool:
    return (
        published.kty == "EC"
        and published.crv == "P-256"
        and published.use == "sig"
        and published.alg == ALG
    )


class TokenVerifier:
    """Verifies access tokens; a token verified once is remembered (by its SHA-256) until it
    expires or its signing key leaves iam's key set, since a desktop sends the same token with
    every request for its lifetime. Revocation is checked separately on every request (the
    session tier), not here."""

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
        self._verified: OrderedDict[bytes, tuple[AccessTokenClaims, str]] = OrderedDict()
        self._cache_size = cache_size

    async def verify(
        self, token: str, *, now: float, allow_expired: bool = False
    ) -> AccessTokenClaims:
        """The token's claims once iam's signature, ``typ``, ``iss``, ``aud`` and times check
        out.

        ``allow_expired`` skips only the ``exp`` check: the refresh route accepts the device's
        last token after it expired, to learn which session it is about (API contract §2).
        """
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            claims, kid = cached
            if await self._keys.key(kid) is None:
                self._verified.pop(digest, None)
                raise TokenRejected("token signed by a key iam no longer publishes")
            self._check_times(claims, now, allow_expired)
            self._verified.move_to_end(digest)
            return claims
        claims, kid = await self._verify(token, TYP_ACCESS, AccessTokenClaims)
        self._check_times(claims, now, allow_expired)
        self._verified[digest] = (claims, kid)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    async def attestation(self, token: str, *, now: float) -> AttestationClaims:
        """A step-up attestation's claims (``typ`` ``step-up+jwt``, iam's signature, our issuer
        and audience, not expired). Only its canonical spelling is accepted, so that its use
        can be recorded once (edge/auth/compact.py). Never cached: each is used once."""
        if not is_canonical(token):
            raise TokenRejected("attestation is not a canonically encoded compact JWT")
        claims, _ = await self._verify(token, TYP_ATTESTATION, AttestationClaims)
        self._check_times(claims, now, allow_expired=False)
        return claims

    def _check_times(
        self, claims: AccessTokenClaims | AttestationClaims, now: float, allow_expired: bool
    ) -> None:
        if not allow_expired and claims.exp <= now - self._leeway:
            raise TokenRejected("token expired")
        if claims.iat > now + self._leeway:
            raise TokenRejected("token issued in the future")

    async def _verify(
        self, token: str, typ: str, claims_type: type[_Claims]
    ) -> tuple[_Claims, str]:
        parsed = _parse(token)
        try:
            header: Any = parsed.jose_header  # checks ``crit`` (unknown names are refused)
        except (JWException, ValueError, TypeError):
            raise TokenRejected("token header is not acceptable") from None
        if not isinstance(header, dict):
            raise TokenRejected("token must be a compact JWT")
        declared = header.get("typ")
        if not isinstance(declared, str) or declared.lower() not in (typ, f"application/{typ}"):
            raise TokenRejected(f"token typ must be {typ}")
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != ALG:
            raise TokenRejected("token must be ES256 with a kid")
        key = await self._keys.key(kid)
        if key is None:
            raise TokenRejected("token signed by an unknown key")
        try:
            parsed.verify(key, alg=ALG)
            claims = msgspec.json.decode(parsed.payload, type=claims_type)
        except (JWException, ValueError, TypeError, msgspec.DecodeError):
            raise TokenRejected("token signature or claims invalid") from None
        if claims.iss != self._issuer or claims.aud != self._audience:
            raise TokenRejected("token not issued for this service")
        return claims, kid


def _parse(token: str) -> jws.JWS:
    if len(token) > MAX_TOKEN_BYTES or not is_compact(token):
        raise TokenRejected("token must be a compact JWT")
    parsed = jws.JWS()
    parsed.allowed_algs = [ALG]
    try:
        parsed.deserialize(token)
    except (JWException, ValueError, TypeError):
        raise TokenRejected("token is not a well-formed JWT") from None
    return parsed
