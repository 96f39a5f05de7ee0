"""Simulated sync-service: the device handshake and the authoritative cursor (no retries)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Literal

from ops.sim.context import Sim, not_found
from ops.sim.http import Request, Response, Router
from ops.sim.world import utc_now
from schemas.upstream.sync import CursorAdvance, DeviceCursor, HandshakeRequest, HandshakeResponse

BASE = "/sync/v1/tenants/{tenantId}/devices/{deviceId}"
SERVER_CURSOR = 4200  # the demo's "latest change" version


def register(router: Router, sim: Sim) -> None:
    router.add("POST", BASE + "/handshake", lambda r: handshake(sim, r))
    router.add("GET", BASE + "/cursor", lambda r: get_cursor(sim, r))
    router.add("POST", BASE + "/cursor", lambda r: advance(sim, r))


def _key(sim: Sim, request: Request) -> tuple[str, str]:
    tenant_id = request.params["tenantId"]
    if tenant_id not in sim.world.tenants:
        raise not_found("tenant")
    return tenant_id, request.params["deviceId"]


def _cursor(sim: Sim, key: tuple[str, str]) -> DeviceCursor:
    return sim.world.cursors.get(key) or DeviceCursor(
        device_id=key[1], cursor_version=0, updated_at=None
    )


async def handshake(sim: Sim, request: Request) -> Response:
    key = _key(sim, request)
    body: HandshakeRequest = request.decode(HandshakeRequest)
    known = _cursor(sim, key).cursor_version
    mode: Literal["delta", "full"] = (
        "full" if body.cursor_version == 0 or body.cursor_version < known - 1000 else "delta"
    )
    base = f"http://{request.header('host') or '127.0.0.1'}"
    return Response(
        200,
        HandshakeResponse(
            sync_session_token=f"sst_{secrets.token_urlsafe(24)}",
            mode=mode,
            server_cursor_version=SERVER_CURSOR + len(sim.world.cursors),
            pull_url=f"{base}/sync/v1/tenants/{key[0]}/devices/{key[1]}/pull",
            expires_at=utc_now() + timedelta(minutes=15),
        ),
    )


async def get_cursor(sim: Sim, request: Request) -> Response:
    return Response(200, _cursor(sim, _key(sim, request)))


async def advance(sim: Sim, request: Request) -> Response:
    """Cursors only move forward; an older value leaves the cursor where it is."""
    key = _key(sim, request)
    body: CursorAdvance = request.decode(CursorAdvance)
    current = _cursor(sim, key)
    if body.cursor_version > current.cursor_version:
        current = DeviceCursor(
            device_id=key[1], cursor_version=body.cursor_version, updated_at=utc_now()
        )
        sim.world.cursors[key] = current
    return Response(200, current)
