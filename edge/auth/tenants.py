"""Tenant suspension from tenant-service, cached per tenant for 5 minutes (FAILURE_MODES F-3).

When tenant-service cannot answer and nothing is cached, the tenant is treated as active (the
desk keeps working; suspension is an administrative state, not a security boundary) and the
miss is logged and counted.
"""

from __future__ import annotations

import logging

import trio

from edge.metrics import Metrics
from edge.upstream.apis import TenantApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected

log = logging.getLogger("bff.auth.tenants")


class TenantStatus:
    def __init__(self, api: TenantApi, metrics: Metrics, *, ttl_s: float = 300.0) -> None:
        self._api = api
        self._metrics = metrics
        self._ttl = ttl_s
        self._cache: dict[str, tuple[bool, float]] = {}

    async def suspended(self, tenant: str) -> bool:
        cached = self._cache.get(tenant)
        now = trio.current_time()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        try:
            info = await self._api.tenant(tenant)
        except (UpstreamFailure, UpstreamRejected) as exc:
            self._metrics.auth_degraded.labels("tenant_status").inc()
            log.warning("tenant status unknown", extra={"tenant": tenant, "error": str(exc)})
            return cached[0] if cached is not None else False
        suspended = info.status == "suspended"
        self._cache[tenant] = (suspended, now)
        if len(self._cache) > 10_000:
            self._cache.pop(next(iter(self._cache)))
        return suspended
