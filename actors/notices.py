"""Device notices: what a device's live stream is told by the actors of this process
(force-logout now; AI suggestions and alerts with the SSE stream). They travel on the one
fan-out primitive (:mod:`actors.fanout`), keyed by ``(tenant, deviceId)``."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.fanout import Fanout

END_OF_STREAM = "_end"  # a Notice that closes the device's streams without an SSE event


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One event for a device's SSE stream: ``event`` name and its JSON ``data``."""

    event: str  # "session", "alert", "ai.suggestion", …
    data: dict[str, Any]


DeviceKey = tuple[str, str]  # (tenant, device id)
NoticeHub = Fanout[DeviceKey, Notice]
