"""The auth chain of every ``/bff/backoffice/v1/*`` route, in the order of the error decision
tree (FAILURE_MODES §2, API contract §3):

SESSION_REQUIRED → DPOP_INVALID → SESSION_EXPIRED → DEVICE_MISMATCH → TENANT.SUSPENDED →
PROPERTY_OUT_OF_SCOPE → CACHE_UNAVAILABLE → SYNC.VERSION_BLOCKED, then the per-device rate limit.

The proof is checked before the token; the token before the key binding (``cnf.jkt``) so that
binding compares against verified claims; the ``jti`` replay check and the revocation check
share one Redis round trip, and run last among the DPoP checks so an invalid request can never
burn a ``jti``.

The token refresh route (edge/auth/refresh.py) is not behind this chain (its access token is
optional and may have expired) but reuses its steps: the proof check, the token check, the key
binding, the same ``jti`` replay store and its per-instance fallback, the revocation markers,
tenant suspension and the app-version floor.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from quart import request

from edge.auth.dpop import ALLOWED_ALGS, DpopInvalid, VerifiedProof, verify_proof
from edge.auth.floor import BadVersion, VersionFloor
from edge.auth.principal import Access, Principal
from edge.auth.sessions import SessionStore
from edge.auth.stepup import StepUp
from edge.auth.tenants import TenantStatus
from edge.auth.tokens import KeySetUnavailable, TokenRejected, TokenVerifier
from edge.decoding import Malformed, decode_json
from edge.errors import ApiError, Code
from edge.metrics import Metrics
from edge.redis_tier import Client, TierUnavailable
from edge.settings import Settings
from schemas.upstream.iam import AccessTokenClaims

log = logging.getLogger("bff.auth")

CHALLENGE = f'DPoP algs="{" ".join(ALLOWED_ALGS)}"'
OpenSession = Callable[[Principal], Awaitable[None]]
# RFC 9449 §7.1: the access token in ``Authorization: DPoP`` has the token68 syntax.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def reject(code: Code, message: str, error: str | None = None) -> ApiError:
    """The contract's error; a 401 also carries the RFC 9449 §7.1 challenge."""
    headers: dict[str, str] = {}
    if code.status == 401:
        detail = f', error="{error}"' if error else ""
        headers["WWW-Authenticate"] = f"{CHALLENGE}{detail}"
    return ApiError(code, message, headers=headers)


@dataclass
class TierChecks:
    """What one Redis round trip told us about this request."""

    replayed: bool
    revoked: bool
    session_known: bool
    request_count: int
    tier_down: bool


Owner = tuple[str, str]  # (tenant, device) in the chain; ("_refresh", key thumbprint) on refresh
REPLAY_SKEW_MARGIN_S = 30  # clock skew between instances a remembered ``jti`` must outlast
LOCAL_REPLAY_CAPACITY = 100_000  # entries of the per-instance fallback, all devices together


class LocalReplayCache:
    """Bounded per-instance memory of seen proofs, used while the session tier is down.

    Each owner (a tenant's device) has a bucket of its own, at most ``per_owner`` live entries:
    a full bucket refuses that owner's new proofs (fail closed, never forget) and nobody
    else's. The whole cache holds at most ``capacity`` entries: past it the owners that added
    least recently are forgotten first, whole — never the owner adding. Since a device within
    the rate limit never fills its bucket, a flood from one device locks out only itself.
    """

    def __init__(
        self,
        per_owner: int = 2_000,
        capacity: int = LOCAL_REPLAY_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets: OrderedDict[Owner, OrderedDict[str, float]] = OrderedDict()
        self._per_owner = max(1, min(per_owner, capacity))
        self._capacity = capacity
        self._size = 0
        self._clock = clock

    def __len__(self) -> int:
        return self._size

    def add_once(self, owner: Owner, key: str, ttl_s: float) -> bool:
        """Remember ``key`` for ``ttl_s``; False when it was already seen (or the owner's
        bucket is full)."""
        now = self._clock()
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = OrderedDict()
        self._buckets.move_to_end(owner)
        while bucket and next(iter(bucket.values())) <= now:  # one ttl: oldest expire first
            bucket.popitem(last=False)
            self._size -= 1
        if key in bucket or len(bucket) >= self._per_owner:
            return False
        bucket[key] = now + ttl_s
        self._size += 1
        while self._size > self._capacity:
            oldest, entries = next(iter(self._buckets.items()))
            if oldest == owner:
                break  # cannot happen: per_owner <= capacity
            del self._buckets[oldest]
            self._size -= len(entries)
        return True


class LocalRateCounter:
    """Requests per owner in the current minute, per instance: the rate limit while the
    session tier, which holds the shared counters, is down. Holds at most ``capacity``
    owners (the least recently counted are forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._counts: OrderedDict[Owner, tuple[int, int]] = OrderedDict()
        self._capacity = capacity

    def hit(self, owner: Owner, window: int) -> int:
        """Count one request of ``owner`` in minute ``window``; the count so far."""
        previous = self._counts.pop(owner, None)
        count = previous[1] + 1 if previous is not None and previous[0] == window else 1
        self._counts[owner] = (window, count)
        if len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return count


class AuthChain:
    def __init__(
        self,
        settings: Settings,
        tokens: TokenVerifier,
        sessions: SessionStore,
        tenants: TenantStatus,
        floor: VersionFloor,
        metrics: Metrics,
        *,
        open_session: OpenSession,
        stepup: StepUp,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.sessions = sessions
        self.tenants = tenants
        self.floor = floor
        self.metrics = metrics
        self.proof_max_age_s = settings.dpop_max_age_s
        self.proof_max_future_s = settings.dpop_max_future_s
        # While the session tier is down: a device within the rate limit never fills its bucket
        # (the ``jti`` TTL spans at most this many minute windows, each up to the limit), and no
        # device, whatever the limit, holds more than a tenth of the memory.
        windows = -(-self.replay_ttl_s // 60) + 1
        per_device = min(settings.rate_limit_per_minute * windows, LOCAL_REPLAY_CAPACITY // 10)
        self.local_replay = LocalReplayCache(per_owner=per_device)
        self.local_rate = LocalRateCounter()
        # Refresh proofs come before any token names a device: their own memory, so that proofs
        # made with throw-away keys can never push the devices' entries out.
        self.local_refresh_replay = LocalReplayCache(per_owner=windows * 60)
        self.open_session = open_session  # opens the session (DeviceActor) on a first call
        self.stepup = stepup  # MFA guard of sensitive actions

    async def check(self, access: Access, path_params: Mapping[str, Any]) -> Principal:
        try:
            return await self._check(access, path_params)
        except ApiError as exc:
            self.metrics.auth_rejected.labels(exc.code.wire).inc()
            raise

    async def _check(self, access: Access, path_params: Mapping[str, Any]) -> Principal:
        token = self.access_token()
        proof = self.check_proof(access_token=token)
        claims = await self.verify_token(token)
        self.check_binding(claims, proof)
        tier = await self._tier_checks(claims, proof.jti, proof.jkt)
        if tier.replayed:
            raise self._replayed()
        if tier.revoked:
            raise reject(Code.SESSION_EXPIRED, "session was revoked or signed out", "invalid_token")
        self._check_devices(claims, path_params)
        if access != "signout":  # signing out is always allowed
            await self.check_tenant(claims.tid)
        self._check_properties(claims, path_params)
        if tier.tier_down and access in ("mutation", "sse", "signout"):
            raise ApiError(Code.CACHE_UNAVAILABLE, "session store unavailable; retry shortly")
        app_version = await self.check_app_version(enforce_floor=access != "signout")
        self._check_rate(tier)
        principal = Principal(
            tenant=claims.tid,
            operator_id=claims.sub,
            device_id=claims.did,
            session_id=claims.sid,
            role=claims.role,
            property_ids=tuple(claims.pids),
            jkt=proof.jkt,
            app_version=app_version,
            expires_at=claims.exp,
        )
        if not tier.session_known and not tier.tier_down and self.open_session is not None:
            await self.open_session(principal)
        return principal

    # --- the steps (the refresh route runs some of them too) ----------------------------------

    def optional_access_token(self) -> str | None:
        """The token of ``Authorization: DPoP <token>`` when there is one (the refresh route)."""
        values = request.headers.getlist("Authorization")
        return self.access_token() if values and values[0].strip() else None

    def access_token(self) -> str:
        """The token of ``Authorization: DPoP <token>`` (token68, RFC 9449 §7.1)."""
        values = request.headers.getlist("Authorization")
        if not values or not values[0].strip():
            raise reject(Code.SESSION_REQUIRED, "Authorization: DPoP <token> is required")
        if len(values) > 1:
            raise reject(Code.DPOP_INVALID, "more than one Authorization header", "invalid_request")
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "dpop" or not token or " " in token:
            raise reject(
                Code.DPOP_INVALID, "Authorization must use the DPoP scheme", "invalid_request"
            )
        if not _TOKEN68.fullmatch(token):
            raise reject(Code.DPOP_INVALID, "access token is not a token68", "invalid_request")
        return token

    def check_proof(self, *, access_token: str | None) -> VerifiedProof:
        """Every RFC 9449 §4.3 check of this request's one proof but the ``jti`` replay (which
        needs the session tier). Without ``access_token`` no ``ath`` is required."""
        values = request.headers.getlist("DPoP")
        if len(values) != 1:
            raise reject(
                Code.DPOP_INVALID, "exactly one DPoP proof header is required", "invalid_dpop_proof"
            )
        try:
            return verify_proof(
                values[0].strip(),
                method=request.method,
                url=self.request_url(),
                access_token=access_token,
                now=time.time(),
                max_age_s=self.proof_max_age_s,
                max_future_s=self.proof_max_future_s,
            )
        except DpopInvalid as exc:
            raise reject(Code.DPOP_INVALID, f"DPoP proof: {exc}", "invalid_dpop_proof") from None

    def request_url(self) -> str:
        """The externally visible URL of this request, without the query (``htu``): under
        ``BFF_PUBLIC_URL`` when set, never from a Host header a client could choose."""
        scope = cast(dict[str, Any], request.scope)
        raw = scope.get("raw_path") or request.path.encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        base = self.settings.public_url.rstrip("/")
        if not base:
            base = f"{request.scheme}://{request.host}"
        return base + path

    async def verify_token(self, token: str, *, allow_expired: bool = False) -> AccessTokenClaims:
        try:
            return await self.tokens.verify(token, now=time.time(), allow_expired=allow_expired)
        except TokenRejected as exc:
            raise reject(Code.SESSION_EXPIRED, f"access token: {exc}", "invalid_token") from None
        except KeySetUnavailable:
            raise ApiError(
                Code.UPSTREAM_UNAVAILABLE, "iam keys unavailable; cannot verify tokens"
            ) from None

    def check_binding(self, claims: AccessTokenClaims, proof: VerifiedProof) -> None:
        """The proof's key is the one the token is bound to (``cnf.jkt``, RFC 9449 §6)."""
        if claims.cnf is None:
            raise reject(Code.DPOP_INVALID, "token is not DPoP-bound (no cnf)", "invalid_token")
        if not hmac.compare_digest(claims.cnf.jkt.encode(), proof.jkt.encode()):
            raise reject(Code.DPOP_INVALID, "DPoP key is not the token's key", "invalid_dpop_proof")

    def _replayed(self) -> ApiError:
        self.metrics.dpop_replay_blocked.inc()
        return reject(Code.DPOP_INVALID, "DPoP proof was already used", "invalid_dpop_proof")

    @property
    def replay_ttl_s(self) -> int:
        """How long a ``jti`` is remembered: as long as its proof could be accepted anywhere,
        i.e. the acceptance window plus the clock skew between instances (an instance whose
        clock is behind still accepts a proof after one whose clock is ahead stopped)."""
        return int(self.proof_max_age_s + self.proof_max_future_s) + 1 + REPLAY_SKEW_MARGIN_S

    @staticmethod
    def _proof_digest(proof_jkt: str, jti: str) -> str:
        return hashlib.sha256(f"{proof_jkt}\n{jti}".encode()).hexdigest()

    def _claim_locally(
        self, memory: LocalReplayCache, owner: Owner, digest: str, error: TierUnavailable
    ) -> bool:
        """The replay check while the session tier is down: this instance's own memory (so a
        replay to the same instance is still refused). True when the proof is fresh."""
        self.metrics.auth_degraded.labels("session_tier").inc()
        log.warning(
            "session tier down: local replay/revocation checks", extra={"error": str(error)}
        )
        return memory.add_once(owner, digest, self.replay_ttl_s)

    async def claim_refresh_proof(self, proof: VerifiedProof) -> None:
        """The replay check of a refresh proof: the same ``SET NX`` store (and fallback) as the
        chain's, under a key of its own since the tenant is not known yet (iam tells it later,
        and iam must not be asked with a replayed proof). The key holds only a digest."""
        digest = self._proof_digest(proof.jkt, proof.jti)
        key = self.sessions.tier.global_key("dpop-refresh", digest)
        ttl = self.replay_ttl_s
        try:
            stored = await self.sessions.tier.run(lambda r: r.set(key, b"1", nx=True, ex=ttl))
        except TierUnavailable as exc:
            stored = self._claim_locally(
                self.local_refresh_replay, ("_refresh", proof.jkt), digest, exc
            )
        if not stored:
            raise self._replayed()

    async def session_revoked(self, tenant: str, sid: str) -> bool:
        """Revoked or signed out, per the session tier's marker or this process's memory."""
        if (tenant, sid) in self.sessions.revoked:
            return True
        try:
            marked = await self.sessions.tier.run(
                lambda r: r.exists(self.sessions.revoked_key(tenant, sid))
            )
        except TierUnavailable:
            return False  # the process memory above is all there is while the tier is down
        return bool(marked)

    async def _tier_checks(self, claims: AccessTokenClaims, jti: str, jkt: str) -> TierChecks:
        tenant, sid = claims.tid, claims.sid
        digest = self._proof_digest(jkt, jti)
        replay_key = self.sessions.tier.key(tenant, "dpop", digest)
        replay_ttl = self.replay_ttl_s
        window = int(time.time() // 60)
        rate_key = self.sessions.tier.key(tenant, "rate", claims.did, str(window))

        async def run(r: Client) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.set(replay_key, b"1", nx=True, ex=replay_ttl)
            pipe.exists(self.sessions.revoked_key(tenant, sid))
            pipe.exists(self.sessions.session_key(tenant, sid))
            pipe.incr(rate_key)
            pipe.expire(rate_key, 61)
            result: list[Any] = await pipe.execute()
            return result

        try:
            stored, revoked, known, count, _ = await self.sessions.tier.run(run)
        except TierUnavailable as exc:
            owner = (tenant, claims.did)
            fresh = self._claim_locally(self.local_replay, owner, digest, exc)
            count = self.local_rate.hit(owner, window)  # the rate limit holds, per instance
            revoked = (tenant, sid) in self.sessions.revoked
            return TierChecks(not fresh, revoked, False, count, True)
        return TierChecks(
            replayed=not stored,
            revoked=bool(revoked) or (tenant, sid) in self.sessions.revoked,
            session_known=bool(known),
            request_count=int(count),
            tier_down=False,
        )

    def _check_devices(self, claims: AccessTokenClaims, path_params: Mapping[str, Any]) -> None:
        for device_id in _named_values("deviceId", path_params):
            if device_id != claims.did:
                raise ApiError(Code.DEVICE_MISMATCH, "deviceId is not this session's device")

    async def check_tenant(self, tenant: str) -> None:
        if await self.tenants.suspended(tenant):
            raise ApiError(Code.TENANT_SUSPENDED, "tenant is suspended")

    def _check_properties(self, claims: AccessTokenClaims, path_params: Mapping[str, Any]) -> None:
        for property_id in _named_values("propertyId", path_params):
            if property_id not in claims.pids:
                raise ApiError(
                    Code.PROPERTY_OUT_OF_SCOPE, "propertyId is not in this session's scope"
                )

    async def check_app_version(self, *, enforce_floor: bool = True) -> str:
        """``X-App-Version`` at or above the floor. Missing counts as below it (API contract
        §2: a client too old to send it is too old to serve); malformed is the client's bug,
        refused on every call, floor or not (sign-out parses it but ignores the floor)."""
        version = (request.headers.get("X-App-Version") or "").strip()
        if not version and enforce_floor:
            raise ApiError(Code.SYNC_VERSION_BLOCKED, "X-App-Version is required")
        try:
            blocked = await self.floor.blocks(version) if version else False
        except BadVersion:
            raise ApiError(
                Code.VALIDATION_FAILED, "X-App-Version: must be a semantic version"
            ) from None
        if blocked and enforce_floor:
            raise ApiError(Code.SYNC_VERSION_BLOCKED, "this app version is no longer supported")
        return version

    def _check_rate(self, tier: TierChecks) -> None:
        limit = self.settings.rate_limit_per_minute
        if tier.request_count > limit:
            retry_after = 60 - int(time.time()) % 60
            raise ApiError(
                Code.RATE_LIMITED,
                f"more than {limit} requests per minute from this device",
                headers={"Retry-After": str(max(retry_after, 1))},
            )


def _named_values(name: str, path_params: Mapping[str, Any]) -> list[str]:
    """Every value of ``name`` in the path, the query and a JSON object body (decoded leniently
    here: the handler validates the body strictly afterwards)."""
    found = [str(path_params[name])] if name in path_params else []
    found += request.args.getlist(name)
    body = _body_fields()
    if isinstance(body.get(name), str):
        found.append(body[name])
    return found


def _body_fields() -> dict[str, Any]:
    cached = getattr(request, "_bff_body_fields", None)
    if cached is not None:
        return cast(dict[str, Any], cached)
    fields: dict[str, Any] = {}
    raw = _cached_body()
    if raw:
        try:  # the one decoder of untrusted input: too deep or not UTF-8 is Malformed too
            decoded = decode_json(raw)
            if isinstance(decoded, dict):
                fields = decoded
        except Malformed:
            pass
    request._bff_body_fields = fields  # type: ignore[attr-defined]
    return fields


def _cached_body() -> bytes:
    body = getattr(request, "_bff_raw_body", None)
    return body if isinstance(body, bytes) else b""


async def load_body() -> None:
    """Read the request body once before the chain runs (bodies are bounded by the app)."""
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        raw = await request.get_data(as_text=False)
        request._bff_raw_body = raw  # type: ignore[attr-defined]
