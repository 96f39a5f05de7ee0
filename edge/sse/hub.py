"""The stream hub: this instance's live SSE streams, and its one line to the devices' feeds.

Task tree (a child of the assembly's nursery)::

    StreamHub.run
    ├── _listen    PSUBSCRIBE <prefix>:*:sse:node:<node>; each message → the fan-out
    └── _renew     every keep-alive period: renew ownership, find replaced/revoked/suspended

A stream registers under ``(tenant, deviceId)`` on the fan-out (:mod:`actors.fanout`) before
it claims the device; from then on every item appended to the device's feed on any instance is
pushed here (``edge/sse/feed.py``). What may be lost on the way — a message published while
this instance was not subscribed, a Redis restart — is read back from the feed: each pushed
entry names its predecessor, and after every (re)subscription each stream catches up.

A stream that cannot keep up is cut off (its bounded buffer is full: the fan-out evicts it and
the hub cancels its response), never slowing the others; it resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
import redis.exceptions
import trio
import trio_asyncio

from actors.fanout import Fanout
from actors.ports import DependencyDown
from edge.metrics import Metrics
from edge.sse.feed import Held, RedisDeviceFeed, decode_item
from schemas.sse import FeedItem

log = logging.getLogger("bff.sse.hub")

DeviceKey = tuple[str, str]  # (tenant, device id)
ControlKind = Literal["replaced", "catch_up", "reconnect", "revoked", "suspended"]
RENEW_CHUNK = 500
LISTEN_POLL_S = 5.0
BACKOFF_S = (0.05, 0.2, 0.5, 1.0, 2.0)


def node_id(instance: str) -> str:
    """The instance id as a node name (it travels in keys, channel names and owner values)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "-", instance)[:100] or "bff"


class Pushed(msgspec.Struct, frozen=True):
    """A feed entry pushed to this instance: ``prev`` is the entry before it in the feed."""

    id: str
    prev: str
    item: FeedItem


class Control(msgspec.Struct, frozen=True):
    """What the hub tells a stream: for ``replaced``/``revoked`` only the stream ``token``."""

    kind: ControlKind
    token: str | None = None


Signal = Pushed | Control


class _Message(msgspec.Struct, frozen=True, omit_defaults=True):
    to: list[tuple[str, str, str]] = []
    item: msgspec.Raw = msgspec.Raw(b"")  # a FeedItem, decoded only when addressed here
    replace: tuple[str, str] | None = None


_message = msgspec.json.Decoder(_Message)


@dataclass(eq=False)
class Registration:
    """One live stream of this instance, as the hub knows it."""

    tenant: str
    device_id: str
    token: str
    session_id: str
    scope: trio.CancelScope  # cancelling it ends the HTTP response
    receive: trio.MemoryReceiveChannel[Signal]
    cut: str | None = field(default=None)  # why the hub cut it off
    # Set once the device actor granted the claim. Registered before claiming (so nothing
    # pushed meanwhile is missed), a stream is renewed only from then on: until the claim, the
    # owner record names the previous stream, and renewing would call this one replaced.
    claimed: bool = field(default=False)


class StreamHub:
    def __init__(
        self,
        feed: RedisDeviceFeed,
        node: str,
        metrics: Metrics,
        *,
        buffer: int = 256,
        renew_s: float = 15.0,
        suspended: Any = None,  # async (tenant) -> bool: tenant-service's suspension status
    ) -> None:
        self.feed = feed
        self.node = node
        self.draining = False
        self.subscribed = False  # the node channel is live (pushes reach this instance)
        self._metrics = metrics
        self._renew_s = renew_s
        self._suspended = suspended
        self._fanout: Fanout[DeviceKey, Signal] = Fanout(
            buffer=buffer, evict=True, on_full=self._overflow
        )
        self._streams: dict[str, Registration] = {}
        self._by_device: dict[DeviceKey, set[str]] = {}
        self._ended = trio.Event()

    # --- registration (the stream route) ---

    @property
    def count(self) -> int:
        return len(self._streams)

    @contextmanager
    def register(
        self, tenant: str, device_id: str, token: str, session_id: str, scope: trio.CancelScope
    ) -> Iterator[Registration]:
        """Hear the device's feed while the block lasts (enter it before claiming)."""
        key = (tenant, device_id)
        with self._fanout.subscribe(key) as receive:
            reg = Registration(tenant, device_id, token, session_id, scope, receive)
            self._streams[token] = reg
            self._by_device.setdefault(key, set()).add(token)
            self._metrics.sse_streams.inc()
            try:
                yield reg
            finally:
                self._metrics.sse_streams.dec()
                del self._streams[token]
                tokens = self._by_device.get(key)
                if tokens is not None:
                    tokens.discard(token)
                    if not tokens:
                        del self._by_device[key]
                if not self._streams:
                    self._ended.set()

    def _overflow(self, key: DeviceKey) -> None:
        """A stream's buffer is full: cut it off (it resumes with ``Last-Event-ID``)."""
        for token in self._by_device.get(key, ()):
            reg = self._streams[token]
            stats = reg.receive.statistics()
            if stats.open_send_channels == 0 and reg.cut is None:
                self._cut(reg, "slow_consumer")

    def _cut(self, reg: Registration, reason: str) -> None:
        reg.cut = reason
        reg.scope.cancel()
        self._metrics.sse_cut.labels(reason).inc()

    def _tell(self, key: DeviceKey, signal: Signal) -> None:
        self._fanout.publish(key, signal)

    def _tell_all(self, kind: ControlKind) -> None:
        for key in list(self._by_device):
            self._tell(key, Control(kind))

    # --- drain (SIGTERM) ---

    async def drain(self, deadline_s: float) -> int:
        """Refuse new streams, tell every stream to reconnect elsewhere, and wait until they
        closed (those still open at the deadline are cut). Returns how many were open."""
        self.draining = True
        open_streams = len(self._streams)
        if not open_streams:
            return 0
        self._ended = trio.Event()
        self._tell_all("reconnect")
        with trio.move_on_after(deadline_s):
            await self._ended.wait()
        for reg in list(self._streams.values()):
            self._cut(reg, "drain_deadline")
        log.info("streams drained", extra={"streams": open_streams})
        return open_streams

    # --- the node channel ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self._listen)
            nursery.start_soon(self._renew_loop)
            task_status.started()

    async def _listen(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Hold the subscription, re-subscribing with backoff after any failure. Every
        (re)subscription is followed by a renewal and a catch-up of every stream."""
        attempt = 0
        started = False
        while True:
            try:
                async with _NodeSubscription(
                    self.feed.tier.url, self.feed.node_pattern(self.node)
                ) as sub:
                    if not started:
                        task_status.started()
                        started = True
                    attempt = 0
                    await self._pump(sub)
            except (OSError, redis.exceptions.RedisError, trio.TooSlowError) as exc:
                self.subscribed = False
                self._metrics.sse_broker_errors.inc()
                log.warning("stream hub lost its subscription", extra={"error": str(exc)[:300]})
            if not started:
                task_status.started()
                started = True
            await trio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1

    async def _pump(self, sub: _NodeSubscription) -> None:
        while True:
            message = await sub.get(LISTEN_POLL_S)
            if message is None:
                continue
            kind = message.get("type")
            if kind == b"psubscribe" or kind == "psubscribe":
                self.subscribed = True
                await self._recover()
            elif kind in (b"pmessage", "pmessage"):
                self._dispatch(_text(message.get("channel")), message.get("data"))

    def _dispatch(self, channel: str, data: Any) -> None:
        tenant = self.feed.tenant_of(channel, self.node)
        if tenant is None or not isinstance(data, bytes | str):
            return
        try:
            message = _message.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("unreadable node-channel message", extra={"channel": channel[:200]})
            return
        if message.replace is not None:
            device, token = message.replace
            self._tell((tenant, device), Control("replaced", token))
        if message.item and message.to:
            item = decode_item(bytes(message.item))
            if item is None:
                return
            for device, prev, entry_id in message.to:
                if (tenant, device) in self._by_device:
                    self._tell((tenant, device), Pushed(entry_id, prev, item))

    async def _recover(self) -> None:
        """Just (re)subscribed: messages may have been missed. Take back ownership where the
        tier forgot it, then have every stream read its feed."""
        if not self._streams:
            return
        await self._renew_owners()
        self._tell_all("catch_up")

    # --- renewal ---

    async def _renew_loop(self) -> None:
        while True:
            await trio.sleep(self._renew_s)
            await self.renew_once()

    async def renew_once(self) -> None:
        """Renew ownership (and hear of replaced and revoked streams), then end the streams of
        suspended tenants."""
        await self._renew_owners()
        await self._check_suspensions({reg.tenant for reg in self._streams.values()})

    async def _renew_owners(self) -> None:
        held = [
            Held(r.tenant, r.device_id, r.token, r.session_id)
            for r in self._streams.values()
            if r.claimed
        ]
        for start in range(0, len(held), RENEW_CHUNK):
            chunk = held[start : start + RENEW_CHUNK]
            try:
                renewal = await self.feed.renew(self.node, chunk)
            except DependencyDown as exc:
                log.warning("stream ownership not renewed", extra={"error": str(exc)[:300]})
                return
            for h in renewal.replaced:
                self._tell((h.tenant, h.device_id), Control("replaced", h.token))
            for h in renewal.revoked:
                self._tell((h.tenant, h.device_id), Control("revoked", h.token))
            for h in renewal.taken_back:
                self._tell((h.tenant, h.device_id), Control("catch_up", h.token))

    async def _check_suspensions(self, tenants: set[str]) -> None:
        if self._suspended is None:
            return
        for tenant in tenants:
            if await self._suspended(tenant):
                for key in [k for k in self._by_device if k[0] == tenant]:
                    self._tell(key, Control("suspended"))


class _NodeSubscription:
    """A dedicated Redis connection subscribed to one pattern (redis-py's pub/sub, behind the
    trio-asyncio bridge). It has no read timeout of its own: :meth:`get` polls with one."""

    def __init__(self, url: str, pattern: str) -> None:
        self._url = url
        self._pattern = pattern
        self._client: Any = None
        self._pubsub: Any = None

    async def __aenter__(self) -> _NodeSubscription:
        async def connect() -> None:
            self._client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=2.0, health_check_interval=10
            )
            self._pubsub = self._client.pubsub()
            await self._pubsub.psubscribe(self._pattern)

        with trio.fail_after(5.0):
            await trio_asyncio.aio_as_trio(connect)()
        return self

    async def get(self, timeout: float) -> dict[str, Any] | None:
        async def read() -> Any:
            return await self._pubsub.get_message(timeout=timeout)

        with trio.fail_after(timeout + 5.0):
            message: dict[str, Any] | None = await trio_asyncio.aio_as_trio(read)()
            return message

    async def __aexit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._pubsub is not None:
                await self._pubsub.aclose()
            if self._client is not None:
                await self._client.aclose()

        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(2.0),
            suppress(OSError, redis.exceptions.RedisError),
        ):
            await trio_asyncio.aio_as_trio(close)()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
