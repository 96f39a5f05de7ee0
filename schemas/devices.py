"""Wire schemas of the device routes: token refresh, sign-out, heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from schemas.sync import Cursor, Instant, QueuedActions

Version = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^\d+\.\d+\.\d+")]


class RefreshRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Body of ``POST /auth/refresh``. The ``DPoP`` header holds a proof for the BFF's own
    refresh URL made with the device key (API contract §2); the BFF verifies it and asks iam to
    rotate this refresh token on behalf of that key."""

    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class TokenPair(msgspec.Struct, kw_only=True, rename="camel"):
    """Answer of ``POST /auth/refresh``: the contract's ``accessToken``, ``refreshToken`` and
    ``expiresIn`` (seconds), plus the unchanged ``sessionId``. The old refresh token is spent."""

    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str


class SignedOut(msgspec.Struct, kw_only=True, rename="camel"):
    session_id: str
    signed_out: bool
    iam_revoked: bool  # false when iam could not be told; the BFF rejects the session anyway


class HeartbeatRequest(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """``appVersion`` is optional: the version of a request is its ``X-App-Version`` header
    (one source per request); when the body names one too it must be the same."""

    app_version: Version | None = None
    # The sync fields update DeviceSyncStatus (the cursor only forward) and the offline-queue
    # hint: see schemas/sync.py for the cursor's form and order.
    sync_cursor: Cursor | None = None
    queued_actions: QueuedActions | None = None
    online_since: Instant | None = None


class HeartbeatResponse(msgspec.Struct, kw_only=True, rename="camel"):
    device_id: str
    heartbeat_count: int
    duplicate: bool
    server_time: datetime
