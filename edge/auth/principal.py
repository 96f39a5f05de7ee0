"""Who is calling: what the auth chain established about a request (edge/auth/guard.py)."""

from __future__ import annotations

from typing import Literal

import msgspec

from edge.errors import ApiError, Code
from schemas.identifiers import Role

Access = Literal["none", "read", "mutation", "sse", "signout"]
"""What a route needs: nothing, a read, a mutation (or SSE: the session tier must be up), or
sign-out — a mutation that is always allowed, for a suspended tenant or an app below the floor."""


def auth_codes(access: Access) -> tuple[Code, ...]:
    """The errors the auth chain (edge/auth/chain.py) can answer for a route of this access."""
    if access == "none":
        return ()
    codes: tuple[Code, ...] = (
        Code.SESSION_REQUIRED,
        Code.DPOP_INVALID,
        Code.SESSION_EXPIRED,
        Code.DEVICE_MISMATCH,
        Code.TENANT_SUSPENDED,
        Code.PROPERTY_OUT_OF_SCOPE,
        Code.SYNC_VERSION_BLOCKED,
        Code.RATE_LIMITED,
        Code.VALIDATION_FAILED,  # a malformed X-App-Version
        Code.UPSTREAM_UNAVAILABLE,  # iam's keys could not be fetched
        # A device's first call opens its session through its DeviceActor (or the chain is not
        # assembled yet): the actor's failure is a retryable 503.
        Code.SERVICE_UNAVAILABLE,
        Code.OVERLOADED,
    )
    if access == "signout":
        never = (Code.TENANT_SUSPENDED, Code.SYNC_VERSION_BLOCKED)
        codes = tuple(c for c in codes if c not in never)
    return (*codes, Code.CACHE_UNAVAILABLE) if access in ("mutation", "sse", "signout") else codes


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated operator on an enrolled device, inside one tenant."""

    tenant: str
    operator_id: str
    device_id: str
    session_id: str
    role: Role
    property_ids: tuple[str, ...]
    jkt: str  # thumbprint of the device's DPoP key
    app_version: str  # X-App-Version, checked against the floor (the request's one version)
    expires_at: int = 0  # the access token's ``exp`` (a stream ends when its token does)

    def require_property(self, property_id: str) -> None:
        """PROPERTY_OUT_OF_SCOPE unless the token's ``pids`` include ``property_id``."""
        if property_id not in self.property_ids:
            raise ApiError(Code.PROPERTY_OUT_OF_SCOPE, "propertyId is not in this session's scope")
