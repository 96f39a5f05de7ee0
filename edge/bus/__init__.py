"""The message bus port and its two adapters: Google Pub/Sub and the embedded Redis-Streams bus.

Factories (usable from any Trio program; the embedded bus needs ``trio_asyncio.open_loop()``
around them, like every Redis user here)::

    async with open_publisher(settings) as publisher:
        await publisher.publish([BusMessage(...)])

    async with open_source(settings, instance) as source:
        subscriber = Subscriber(source, handler)
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from edge.bus.port import CONSUMED_TOPICS, BusSource, Publisher
from edge.redis_tier import RedisTier
from edge.settings import Settings

__all__ = ["instance_id", "open_publisher", "open_source"]


def instance_id(settings: Settings) -> str:
    """``BFF_INSTANCE_ID``, or a fresh ``<host>-<pid>-<random>`` (names the per-instance
    subscription / consumer group, so it must differ between live instances)."""
    if settings.instance_id:
        return settings.instance_id
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40] or "bff"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _creates_topics(settings: Settings) -> bool:
    return settings.mode == "local" or bool(settings.pubsub_emulator_host)


def _bus_tier(settings: Settings) -> RedisTier:
    # The embedded bus lives on the session tier's Redis (the one the BFF cannot run without).
    return RedisTier(
        "bus",
        settings.redis_session_url,
        settings.redis_prefix,
        timeout=max(settings.dependency_timeout_s, 2.0),
    )


@asynccontextmanager
async def open_publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """The configured bus's publisher (``settings.bus_kind``), opened and closed with the block."""
    if settings.bus_kind == "pubsub":
        from edge.bus.pubsub import PubSubPublisher

        emulator = settings.pubsub_emulator_host
        publisher = PubSubPublisher(
            settings.pubsub_project,
            emulator_host=(settings.pubsub_publish_host or emulator) if emulator else "",
            endpoint="" if emulator else settings.pubsub_publish_host,
            timeout=settings.bus_publish_timeout_s,
            create_topics=_creates_topics(settings),
        )
        await publisher.open()
        try:
            yield publisher
        finally:
            await publisher.close()
        return
    from edge.bus.redis_streams import RedisStreamsPublisher

    tier = _bus_tier(settings)
    await tier.open()
    try:
        yield RedisStreamsPublisher(tier, maxlen=settings.bus_stream_maxlen)
    finally:
        await tier.close()


@asynccontextmanager
async def open_source(
    settings: Settings, instance: str, topics: Sequence[str] = CONSUMED_TOPICS
) -> AsyncIterator[BusSource]:
    """The configured bus's per-instance subscription side (for :class:`Subscriber`)."""
    if settings.bus_kind == "pubsub":
        from edge.bus.pubsub import PubSubSource

        yield PubSubSource(
            settings.pubsub_project,
            instance,
            topics,
            emulator_host=settings.pubsub_emulator_host,
            create_topics=_creates_topics(settings),
            ttl_s=settings.bus_subscription_ttl_s,
            timeout=settings.bus_publish_timeout_s,
        )
        return
    from edge.bus.redis_streams import RedisStreamsSource

    tier = _bus_tier(settings)
    await tier.open()
    try:
        yield RedisStreamsSource(tier, instance, topics)
    finally:
        await tier.close()
