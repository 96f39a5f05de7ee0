"""lock-integration-service: issue and revoke room keys (sensitive: never retried)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.upstream.common import Wire

KeyStatus = Literal["active", "revoked", "expired"]


class LockKey(Wire):
    id: str
    reservation_id: str
    room_id: str
    room_number: str
    status: KeyStatus
    encoder_id: str
    issued_at: datetime
    valid_until: datetime
    issued_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None


class IssueKeyRequest(Wire):
    operator_id: str
    device_id: str
    encoder_id: str = "enc-frontdesk-1"
    key_count: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1


class RevokeKeysRequest(Wire):
    operator_id: str
    device_id: str
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class KeyList(Wire):
    reservation_id: str
    items: list[LockKey]
