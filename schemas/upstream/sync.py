"""sync-service: the device sync handshake and the authoritative cursor (no retries)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire


class HandshakeRequest(Wire):
    operator_id: str
    app_version: Annotated[str, msgspec.Meta(pattern=r"^\d+\.\d+\.\d+")]
    schema_version: Annotated[int, msgspec.Meta(ge=1)]
    cursor_version: Annotated[int, msgspec.Meta(ge=0)] = 0


class HandshakeResponse(Wire):
    sync_session_token: str
    mode: Literal["delta", "full"]
    server_cursor_version: int
    pull_url: str
    expires_at: datetime


class DeviceCursor(Wire):
    device_id: str
    cursor_version: int
    updated_at: datetime | None


class CursorAdvance(Wire):
    cursor_version: Annotated[int, msgspec.Meta(ge=0)]
