"""The entry point route tables call for every authenticated route (edge/api.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.auth.chain import load_body
from edge.auth.principal import Access, Principal
from edge.errors import ApiError, Code


async def authenticate(
    services: Any, access: Access, *, path_params: Mapping[str, Any]
) -> Principal:
    """Run the auth chain for the current request; raise the contract's error on failure."""
    chain = getattr(services, "auth", None)
    if chain is None:
        raise ApiError(Code.SERVICE_UNAVAILABLE, "authentication is not ready")
    await load_body()
    principal: Principal = await chain.check(access, path_params)
    return principal
