"""Building the auth chain from settings and the upstream clients."""

from __future__ import annotations

from edge.auth.chain import AuthChain
from edge.auth.floor import VersionFloor
from edge.auth.sessions import SessionStore
from edge.auth.stepup import StepUp
from edge.auth.tenants import TenantStatus
from edge.auth.tokens import KeySet, TokenVerifier
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from edge.settings import Settings
from edge.upstream.apis import Upstreams


def build_auth_chain(
    settings: Settings, upstreams: Upstreams, session: RedisTier, cache: RedisTier, metrics: Metrics
) -> AuthChain:
    tokens = TokenVerifier(
        KeySet(upstreams.iam.jwks, min_refetch_s=settings.jwks_min_refetch_s),
        issuer=settings.iam_issuer,
        audience=settings.iam_audience,
    )
    chain = AuthChain(
        settings,
        tokens,
        SessionStore(session),
        TenantStatus(upstreams.tenant, metrics, ttl_s=settings.tenant_status_ttl_s),
        VersionFloor(cache, refresh_s=settings.version_floor_refresh_s),
        metrics,
    )
    chain.stepup = StepUp(upstreams.iam, session, metrics)
    return chain
