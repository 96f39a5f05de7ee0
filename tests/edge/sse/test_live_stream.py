"""One stream's output (``edge/sse/connection.py``) over a real Redis feed, with the hub's
signals sent by hand: an item appended again is sent once, and a revoked session ends with
the feed's own reason when it comes in time, with ``revoked`` when it does not."""

from __future__ import annotations

import time

import trio

from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from edge.sse.connection import LiveStream, StreamView
from edge.sse.feed import RedisDeviceFeed
from edge.sse.hub import Control, Pushed, Registration, Signal
from schemas.sse import CHANNELS, FeedItem

T, D, S = "tnt-a", "dev-1", "s1"


GRACE_S = 0.2


def make_stream(
    tier: RedisTier,
) -> tuple[RedisDeviceFeed, trio.MemorySendChannel[Signal], LiveStream]:
    feed = RedisDeviceFeed(tier, lambda t, sid: tier.key(t, "revoked", sid))
    send, receive = trio.open_memory_channel[Signal](8)
    reg = Registration(T, D, "t1", S, trio.CancelScope(), receive)
    view = StreamView(S, frozenset(CHANNELS), frozenset({"p1"}))
    live = LiveStream(
        reg,
        feed,
        view,
        Metrics(),
        resume_from="0-0",
        gap=False,
        keepalive_s=3600,
        retry_ms=1000,
        expires_at=time.time() + 3600,
        revoked_grace_s=GRACE_S,
    )
    return feed, send, live


def alert(key: str) -> FeedItem:
    return FeedItem(key=key, event="alert", data={"alertId": key})


def ending(reason: str) -> FeedItem:
    data = {"kind": "force_logout", "reason": reason}
    return FeedItem(key=f"session-closed:{S}", event="session", data=data, session_id=S)


async def test_an_item_the_feed_took_twice_is_sent_once(tier: RedisTier) -> None:
    feed, send, live = make_stream(tier)
    events = live.events()
    assert b"retry:" in await events.__anext__()
    await feed.append(T, [D], alert("al-1"))
    await tier.run(lambda r: r.delete(feed.feed_key(T, D) + ":seen"))  # the tier forgot it
    await feed.append(T, [D], alert("al-1"))
    await feed.append(T, [D], alert("al-2"))
    await send.send(Control("catch_up"))
    chunk = await events.__anext__()
    assert chunk.count(b'"alertId":"al-1"') == 1 and b'"alertId":"al-2"' in chunk
    await events.aclose()


async def test_a_revoked_session_ends_with_the_reason_the_feed_brings(tier: RedisTier) -> None:
    feed, send, live = make_stream(tier)
    events = live.events()
    await events.__anext__()
    await send.send(Control("revoked", "t1"))  # the marker is heard before the feed has it
    await feed.append(T, [D], ending("security"))
    [(entry_id, item)] = await feed.read_after(T, D, "0-0")
    await send.send(Pushed(entry_id, "0-0", item))
    chunks = [chunk async for chunk in events]
    assert b'"reason":"security"' in b"".join(chunks) and live.ended == "force_logout"


async def test_a_revoked_session_the_feed_says_nothing_of_ends_after_a_grace(
    tier: RedisTier,
) -> None:
    _, send, live = make_stream(tier)
    events = live.events()
    await events.__anext__()
    started = trio.current_time()
    await send.send(Control("revoked", "t1"))
    chunks = [chunk async for chunk in events]
    assert b'"reason":"revoked"' in b"".join(chunks) and live.ended == "force_logout"
    assert trio.current_time() - started >= GRACE_S
