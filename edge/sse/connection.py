"""One device's live stream: what it is sent, in which order, and when it ends.

The stream starts after ``resume_from`` (the device's ``Last-Event-ID`` when its feed still
holds everything since; else live, after a ``history_gap``), sends the feed's history, then
what the hub pushes. ``cursor`` is the last feed entry it has *processed* (sent, or filtered
out): a pushed entry at or before it is a repeat and skipped; one whose predecessor is after
it means something was missed, and the feed is read from the cursor instead. So every entry is
sent at most once and in feed order, whatever the broker lost.

The generator never yields inside a cancel scope (trio's rule for async generators): it
decides under a deadline, leaves the scope, then yields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import msgspec
import trio

from actors.ports import DependencyDown
from edge.metrics import Metrics
from edge.sse.feed import FeedEntry, RedisDeviceFeed, id_after
from edge.sse.hub import Control, Pushed, Registration, Signal
from schemas.sse import CHANNEL_OF, END_OF_STREAM, FeedItem, SessionData

log = logging.getLogger("bff.sse.stream")

KEEP_ALIVE = b": keep-alive\n\n"
# How long a stream whose session the tier marked revoked waits for the feed's own
# force-logout (with its reason) before it says "revoked" itself: the marker is written
# before the device actor appends the ending, so the hub can hear of it first.
REVOKED_GRACE_S = 2.0
# Keys of the items a stream sent lately. The feed refuses a key it holds, but a session tier
# that restarted empty forgot them, and a redelivered event would be appended again.
RECENT_KEYS = 256
_encoder = msgspec.json.Encoder()


def frame(event: str, data: object, entry_id: str | None = None) -> bytes:
    """One SSE event. ``data`` is one JSON object on one line (JSON escapes newlines)."""
    head = f"id: {entry_id}\n" if entry_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + _encoder.encode(data) + b"\n\n"


def session_frame(data: SessionData) -> bytes:
    """A ``session`` event the server makes up (not a feed entry): it carries no ``id:``, so
    the client's ``Last-Event-ID`` stays the last feed entry it saw."""
    return frame("session", data)


@dataclass
class StreamView:
    """What this stream shows: its session, channels and properties."""

    session_id: str
    channels: frozenset[str]
    properties: frozenset[str]

    def shows(self, item: FeedItem) -> bool:
        if item.session_id is not None and item.session_id != self.session_id:
            return False  # about another session of the device
        if item.event == "session" or item.event == END_OF_STREAM:
            return True  # whatever the channel filter says
        if CHANNEL_OF.get(item.event) not in self.channels:
            return False
        return item.property_id is None or item.property_id in self.properties


class LiveStream:
    def __init__(
        self,
        reg: Registration,
        feed: RedisDeviceFeed,
        view: StreamView,
        metrics: Metrics,
        *,
        resume_from: str,
        gap: bool,
        keepalive_s: float,
        retry_ms: int,
        expires_at: float,
        revoked_grace_s: float = REVOKED_GRACE_S,
    ) -> None:
        self.reg = reg
        self.feed = feed
        self.view = view
        self.cursor = resume_from
        self.ended: str | None = None  # why the stream ended
        self._metrics = metrics
        self._gap = gap
        self._keepalive_s = keepalive_s
        self._retry_ms = retry_ms
        self._expires_at = expires_at  # wall clock (the token's exp)
        self._revoked_grace_s = revoked_grace_s
        self._revoked_by: float | None = None  # trio clock: end by then if the feed has not
        self._recent: dict[str, None] = {}  # insertion-ordered, bounded to RECENT_KEYS

    async def events(self) -> AsyncGenerator[bytes, None]:
        first = [f"retry: {self._retry_ms}\n\n".encode()]
        if self._gap:
            first.append(session_frame(SessionData(kind="reconnect", reason="history_gap")))
        first += self._render(await self._read_feed())
        yield b"".join(first)
        while self.ended is None:
            signal: Signal | None = None
            wait = min(self._keepalive_s, self._expires_at - time.time())
            if self._revoked_by is not None:
                wait = min(wait, self._revoked_by - trio.current_time())
                if wait <= 0:
                    yield self._end_revoked(await self._read_feed())
                    return
            if wait <= 0:
                yield self._end(
                    "token_expired", SessionData(kind="reconnect", reason="token_expired")
                )
                return
            with trio.move_on_after(wait):
                try:
                    signal = await self.reg.receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    self.ended = self.reg.cut or "slow_consumer"
            if self.ended is not None:
                return
            if signal is None:
                yield KEEP_ALIVE
                continue
            chunk = await self._on_signal(signal)
            if chunk:
                yield chunk

    async def _on_signal(self, signal: Signal) -> bytes:
        if isinstance(signal, Pushed):
            return await self._on_pushed(signal)
        return await self._on_control(signal)

    async def _on_pushed(self, pushed: Pushed) -> bytes:
        if not id_after(pushed.id, self.cursor):
            return b""  # already processed (history overlap, or a repeat)
        if pushed.prev != self.cursor and id_after(pushed.prev, self.cursor):
            return b"".join(self._render(await self._read_feed()))  # something was missed
        return b"".join(self._render([(pushed.id, pushed.item)]))

    async def _on_control(self, control: Control) -> bytes:
        if control.token is not None and control.token != self.reg.token:
            return b""
        if control.kind == "catch_up":
            return b"".join(self._render(await self._read_feed()))
        if control.kind == "replaced":
            return self._end("replaced", SessionData(kind="replaced"))
        if control.kind == "reconnect":
            return self._end("drain", SessionData(kind="reconnect"))
        if control.kind == "revoked":  # the feed says so soon; if it does not, say it here
            chunks = self._render(await self._read_feed())
            if self.ended is None and self._revoked_by is None:
                self._revoked_by = trio.current_time() + self._revoked_grace_s
            return b"".join(chunks)
        data = SessionData(kind="force_logout", reason="tenant_suspended")
        return self._end("force_logout", data)

    async def _read_feed(self) -> list[FeedEntry]:
        """The feed after the cursor; nothing while the tier is down (the hub has every stream
        catch up once it is back)."""
        try:
            return await self.feed.read_after(self.reg.tenant, self.reg.device_id, self.cursor)
        except DependencyDown as exc:
            log.warning("feed not read", extra={"deviceId": self.reg.device_id, "error": str(exc)})
            return []

    def _render(self, entries: list[FeedEntry]) -> list[bytes]:
        """Frames for the entries after the cursor, in order, up to one that ends the stream."""
        chunks: list[bytes] = []
        for entry_id, item in entries:
            if self.ended is not None or not id_after(entry_id, self.cursor):
                continue
            self.cursor = entry_id
            if not self.view.shows(item) or self._repeats(item.key):
                continue
            if item.event == END_OF_STREAM:
                self._ended_by("signed_out")
                break
            chunks.append(frame(item.event, item.data, entry_id))
            self._metrics.sse_events.labels(item.event).inc()
            if item.event == "session" and item.data.get("kind") == "force_logout":
                self._ended_by("force_logout")
                break
        return chunks

    def _repeats(self, key: str) -> bool:
        if key in self._recent:
            self._metrics.sse_repeats_skipped.inc()
            return True
        self._recent[key] = None
        if len(self._recent) > RECENT_KEYS:
            del self._recent[next(iter(self._recent))]
        return False

    def _end_revoked(self, entries: list[FeedEntry]) -> bytes:
        chunks = self._render(entries)
        if self.ended is None:
            data = SessionData(kind="force_logout", reason="revoked")
            chunks.append(self._end("force_logout", data))
        return b"".join(chunks)

    def _end(self, reason: str, data: SessionData) -> bytes:
        self._ended_by(reason)
        self._metrics.sse_events.labels("session").inc()
        return session_frame(data)

    def _ended_by(self, reason: str) -> None:
        self.ended = reason
        self._metrics.sse_cut.labels(reason).inc()
