"""The device stream (API contract §6): event names, channels, what a device's feed holds and
what the stream route takes.

A device's *feed* is its bounded history of stream events, shared by every instance (the Redis
session tier): the actors append to it, the instance holding the device's live stream reads
from it, and ``Last-Event-ID`` resumes from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from schemas.identifiers import Identifier

EventName = Literal[
    "ai.suggestion",
    "ai.suggestion.invalidated",
    "alert",
    "alert.resolved",
    "dashboard.hint",
    "session",
]
Channel = Literal["ai", "alerts", "dashboard", "session"]
CHANNELS: tuple[Channel, ...] = ("ai", "alerts", "dashboard", "session")
CHANNEL_OF: dict[str, Channel] = {
    "ai.suggestion": "ai",
    "ai.suggestion.invalidated": "ai",
    "alert": "alerts",
    "alert.resolved": "alerts",
    "dashboard.hint": "dashboard",
    "session": "session",
}
SessionKind = Literal["force_logout", "reconnect", "replaced"]

END_OF_STREAM = "_end"
"""A feed entry that closes the session's streams without an SSE event (the device signed out
itself)."""

FeedKey = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class FeedItem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One entry of a device's feed.

    ``key`` makes appends idempotent: an item whose key a device's feed already holds is not
    appended again (every instance consumes every domain event, and a redelivered event is
    handled again; the device still sees it once). ``property_id`` scopes it to the streams
    following that property; ``session_id`` to the streams of that session (a ``session``
    event about an old session must not end a newer session's stream).
    """

    key: FeedKey
    event: str  # an EventName, or END_OF_STREAM
    data: dict[str, Any]
    property_id: str | None = None
    session_id: str | None = None


class StreamQuery(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``GET /sse/stream``. ``propertyId`` absent: every property of the token; ``channels``
    absent: all four (``session`` events are always sent, whatever ``channels`` says)."""

    property_id: Identifier | None = None
    channels: Annotated[str, msgspec.Meta(max_length=100)] | None = None


class SessionData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``data`` of an ``event: session``."""

    kind: SessionKind
    reason: str | None = None
