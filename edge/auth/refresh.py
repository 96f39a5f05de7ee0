"""Token refresh for a device (API contract §2): the desktop proves its key to the BFF, and the
BFF asks iam, as a trusted service, to rotate the refresh token on behalf of that key.

The desktop only ever talks to the BFF, so its ``DPoP`` proof names the BFF's own refresh URL
(``htm`` POST, ``htu`` under ``BFF_PUBLIC_URL`` like every route, no ``ath``). The BFF verifies
it and hands iam only the proven key's thumbprint; iam refuses a refresh token bound to another
key. The checks run in the auth chain's order (API contract §3):

1. ``DPOP_INVALID`` — the proof (every RFC 9449 §4.3 check but ``ath``); an ``Authorization``
   header, when sent, must use the DPoP scheme. Then ``RATE_LIMITED`` (:class:`RefreshThrottle`):
   per device key (the proof's thumbprint) and per client address, before anything else is
   looked up and long before iam is asked.
2. ``SESSION_EXPIRED`` — the old access token, when sent, is not signed by iam (its expiry is
   not checked: the device refreshes because it expired); ``DPOP_INVALID`` when it is bound to
   another key; then the proof's ``jti`` is claimed in the chain's replay store.
3. ``VALIDATION_FAILED`` — the body (it must be read to learn which refresh token).
4. iam introspects the refresh token, spending nothing: another key → ``DPOP_INVALID``;
   already rotated → ``SESSION_EXPIRED`` with the session revoked at iam and, by the caller,
   here (:class:`RefreshTokenReused`); unknown or ended → ``SESSION_EXPIRED``; a session this
   BFF revoked → ``SESSION_EXPIRED``.
5. ``TENANT.SUSPENDED``, then ``SYNC.VERSION_BLOCKED`` (``X-App-Version`` missing or below the
   floor; malformed: ``VALIDATION_FAILED``).
6. iam rotates.

Why introspect first: the tenant (for suspension) is known only from iam, and a refusal after
the rotation would leave the device with a spent refresh token it never got the successor of;
its next refresh would then look like token theft and end the session.

The route needs no session, so anyone can call it: besides the rate limits, iam's refresh
operations wait in a concurrency lane of their own (edge/upstream/policy.py), so a flood of
refreshes while iam is slow cannot hold the slots JWKS fetches and step-up verification need.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from quart import request

from edge.auth.chain import CHALLENGE, AuthChain, reject
from edge.errors import ApiError, Code
from edge.redis_tier import Client, RedisTier, TierUnavailable
from edge.upstream.apis import IamApi
from edge.upstream.errors import UpstreamRejected
from schemas.upstream.iam import AccessTokenClaims, RefreshTokenInfo, TokenResponse

ReadRefreshToken = Callable[[], Awaitable[str]]
SIGN_IN_AGAIN = "refresh token invalid, used, or its session ended; sign in again"


@dataclass(frozen=True)
class SessionRef:
    """The session a refresh token belongs to, as iam names it."""

    tenant: str
    session_id: str
    device_id: str


class RefreshTokenReused(ApiError):
    """A rotated refresh token came back: SESSION_EXPIRED. iam has revoked the session; the
    caller revokes it in the BFF too, at once, rather than wait for iam's event."""

    def __init__(self, session: SessionRef) -> None:
        super().__init__(
            Code.SESSION_EXPIRED,
            "refresh token was already used; the session is revoked, sign in again",
            headers={"WWW-Authenticate": f'{CHALLENGE}, error="invalid_grant"'},
        )
        self.session = session


@dataclass(frozen=True)
class ProvenDevice:
    """What the device proved: its key, and the session of the old token it sent (if any)."""

    jkt: str
    claims: AccessTokenClaims | None


WINDOW_S = 60


class _LocalCounts:
    """Per-instance counters of the current window, used while the session tier is down. When
    full, a key not seen yet is not counted (fail open: the lane still bounds the load on iam,
    and one client cannot lock every other one out)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._window = -1
        self._counts: dict[str, int] = {}

    def incr(self, key: str, window: int) -> int:
        if window != self._window:
            self._window, self._counts = window, {}
        if key not in self._counts and len(self._counts) >= self._capacity:
            return 0
        self._counts[key] = self._counts.get(key, 0) + 1
        return self._counts[key]


class RefreshThrottle:
    """Per-minute limits on ``/auth/refresh``, per device key and per client address, counted
    in the session tier (so across instances) in fixed one-minute windows; while the tier is
    down, per instance. Keys hold the key thumbprint and a digest of the address only."""

    def __init__(
        self,
        tier: RedisTier,
        *,
        per_device: int,
        per_address: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tier = tier
        self.per_device = per_device
        self.per_address = per_address
        self._clock = clock
        self._local = _LocalCounts()

    async def check(self, address: str, jkt: str) -> None:
        """Count this refresh; ``RATE_LIMITED`` (with ``Retry-After``) past either limit."""
        now = self._clock()
        window = int(now // WINDOW_S)
        address_digest = hashlib.sha256(address.encode()).hexdigest()[:32]
        keys = (
            self.tier.global_key("refresh-rate", "device", jkt, str(window)),
            self.tier.global_key("refresh-rate", "address", address_digest, str(window)),
        )

        async def count(r: Client) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, WINDOW_S + 1)
            result: list[Any] = await pipe.execute()
            return result

        try:
            by_device, _, by_address, _ = await self.tier.run(count)
        except TierUnavailable:
            by_device, by_address = (self._local.incr(key, window) for key in keys)
        retry_after = str(max(1, WINDOW_S - int(now) % WINDOW_S))
        if int(by_device) > self.per_device:
            raise ApiError(
                Code.RATE_LIMITED,
                f"more than {self.per_device} refreshes per minute from this device",
                headers={"Retry-After": retry_after},
            )
        if int(by_address) > self.per_address:
            raise ApiError(
                Code.RATE_LIMITED,
                f"more than {self.per_address} refreshes per minute from this address",
                headers={"Retry-After": retry_after},
            )


def client_address() -> str:
    """The peer address of this request, as the ASGI server saw it."""
    client = cast(dict[str, Any], request.scope).get("client")
    return str(client[0]) if client else "unknown"


async def refresh_tokens(
    chain: AuthChain,
    iam: IamApi,
    read_refresh_token: ReadRefreshToken,
    throttle: RefreshThrottle,
) -> TokenResponse:
    """The whole refresh; every refusal is counted like the auth chain's."""
    try:
        device = await prove_device(chain, throttle)
        refresh_token = await read_refresh_token()
        session = await owner(chain, iam, device, refresh_token)
        await chain.check_tenant(session.tenant)
        await chain.check_app_version()
        return await rotate(iam, device, session, refresh_token)
    except ApiError as exc:
        chain.metrics.auth_rejected.labels(exc.code.wire).inc()
        raise


async def prove_device(chain: AuthChain, throttle: RefreshThrottle) -> ProvenDevice:
    """Steps 1 and 2: the proof, the rate limits, the optional old token and its key binding,
    the ``jti`` claim."""
    token = chain.optional_access_token()
    proof = chain.check_proof(access_token=None)
    await throttle.check(client_address(), proof.jkt)
    claims = None
    if token is not None:
        claims = await chain.verify_token(token, allow_expired=True)
        chain.check_binding(claims, proof)
    await chain.claim_refresh_proof(proof)
    return ProvenDevice(jkt=proof.jkt, claims=claims)


async def owner(
    chain: AuthChain, iam: IamApi, device: ProvenDevice, refresh_token: str
) -> SessionRef:
    """Step 4: the session behind ``refresh_token``, if the proven key may refresh it."""
    info = await iam.introspect_refresh(refresh_token, device.jkt)
    if info.state == "key_mismatch":
        raise _other_key()
    session = _session_of(info)
    if info.state == "reused" and session is not None:
        raise RefreshTokenReused(session)
    if not info.active or session is None:
        raise reject(Code.SESSION_EXPIRED, SIGN_IN_AGAIN, "invalid_grant")
    old = device.claims
    if old is not None and (old.tid, old.sid) != (session.tenant, session.session_id):
        raise reject(
            Code.SESSION_EXPIRED,
            "the access token and the refresh token are of different sessions",
            "invalid_token",
        )
    if await chain.session_revoked(session.tenant, session.session_id):
        raise reject(Code.SESSION_EXPIRED, "session was revoked or signed out", "invalid_token")
    return session


async def rotate(
    iam: IamApi, device: ProvenDevice, session: SessionRef, refresh_token: str
) -> TokenResponse:
    """Step 6. A refusal here means the token changed hands since the introspection (a race
    with another refresh of the same token): iam's answer says how."""
    try:
        tokens = await iam.refresh_for_key(refresh_token, device.jkt)
    except UpstreamRejected as exc:
        if exc.upstream_code == "key_mismatch":
            raise _other_key() from None
        if exc.upstream_code == "refresh_token_reused":
            raise RefreshTokenReused(session) from None
        if exc.status in (400, 401, 403):
            raise reject(Code.SESSION_EXPIRED, SIGN_IN_AGAIN, "invalid_grant") from None
        raise
    if not hmac.compare_digest(tokens.session_id.encode(), session.session_id.encode()):
        raise ApiError(Code.SCHEMA_DRIFT, "iam refreshed another session than it introspected")
    return tokens


def _session_of(info: RefreshTokenInfo) -> SessionRef | None:
    if info.tenant_id and info.session_id and info.device_id:
        return SessionRef(info.tenant_id, info.session_id, info.device_id)
    return None


def _other_key() -> ApiError:
    return reject(
        Code.DPOP_INVALID, "the refresh token is bound to another key", "invalid_dpop_proof"
    )
