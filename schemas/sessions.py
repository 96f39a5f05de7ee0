"""A device's backoffice session as the session tier stores it (shared by every instance)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class BackofficeSession(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Written by the DeviceActor on the device's first authenticated call; read by every
    instance's auth chain. Stored as JSON for 12 h: add fields only with defaults."""

    session_id: str
    tenant: str
    operator_id: str
    device_id: str
    role: str
    property_ids: tuple[str, ...]
    jkt: str
    opened_at: datetime
