"""The device feeds and stream ownership in a real Redis (``edge/sse/feed.py``'s Lua scripts),
and the stream hub's node channel: what is appended once, bounded, pushed to the holder only,
and taken back after the tier forgot it."""

from __future__ import annotations

import pytest
import trio

from actors.ports import StreamClaim, StreamsThrottled
from edge.metrics import Metrics
from edge.redis_tier import RedisTier
from edge.sse.feed import Held, RedisDeviceFeed, grant, id_after, parse_id
from edge.sse.hub import Control, Pushed, StreamHub
from schemas.sse import FeedItem
from tests.support.waiting import eventually

T, D = "tnt-a", "dev-1"


def make_feed(tier: RedisTier, **kwargs: int) -> RedisDeviceFeed:
    return RedisDeviceFeed(tier, lambda t, sid: tier.key(t, "revoked", sid), **kwargs)


def item(key: str, **kwargs: str) -> FeedItem:
    return FeedItem(key=key, event="alert", data={"alertId": key}, **kwargs)


def claim(token: str, node: str = "n1", after: str | None = None) -> StreamClaim:
    return StreamClaim(token=token, node=node, session_id="s1", after=after)


async def test_an_item_is_appended_once_per_device_and_the_feed_is_bounded(
    tier: RedisTier,
) -> None:
    feed = make_feed(tier, history=16)
    assert await feed.append(T, [D, "dev-2"], item("a1")) == 2
    assert await feed.append(T, [D, "dev-2"], item("a1")) == 0  # a redelivery, another instance
    for n in range(20):
        await feed.append(T, [D], item(f"x{n}"))
    entries = await feed.read_after(T, D, "0-0")
    assert [i.key for _, i in entries] == [f"x{n}" for n in range(4, 20)]  # MAXLEN 16
    ids = [parse_id(entry_id) or (0, 0) for entry_id, _ in entries]
    assert ids == sorted(ids) and len(set(ids)) == 16
    ttl = await tier.run(lambda r: r.ttl(feed.feed_key(T, D)))
    assert 0 < ttl <= feed.ttl_s
    seen_ttl = await tier.run(lambda r: r.ttl(feed.feed_key(T, D) + ":seen"))
    assert 0 < seen_ttl <= feed.ttl_s


async def test_feeds_of_two_tenants_never_meet(tier: RedisTier) -> None:
    feed = make_feed(tier)
    await feed.append("tnt-a", [D], item("same"))
    await feed.append("tnt-b", [D], item("same"))  # same device id and key, another tenant
    assert len(await feed.read_after("tnt-a", D, "0-0")) == 1
    assert len(await feed.read_after("tnt-b", D, "0-0")) == 1
    assert feed.tenant_of(feed.channel_prefix("tnt-b") + "n1", "n1") == "tnt-b"
    assert feed.tenant_of(feed.channel_prefix("tnt-b") + "n2", "n1") is None


async def test_a_claim_replaces_the_holder_and_a_loop_is_throttled(tier: RedisTier) -> None:
    feed = make_feed(tier, opens_per_minute=2)
    first = await feed.claim(T, D, claim("t1"))
    assert not first.replaced and not first.gap
    second = await feed.claim(T, D, claim("t2", node="n2"))
    assert second.replaced
    with pytest.raises(StreamsThrottled) as refused:
        await feed.claim(T, D, claim("t3"))
    assert 0 < refused.value.retry_after <= 60
    await feed.release(T, D, "t1")  # the replaced stream's release leaves the new owner
    owner = await tier.run(lambda r: r.get(feed.owner_key(T, D)))
    assert owner == b"n2 t2"
    await feed.release(T, D, "t2")
    assert await tier.run(lambda r: r.get(feed.owner_key(T, D))) is None


async def test_resume_points(tier: RedisTier) -> None:
    feed = make_feed(tier, history=16)
    fresh = await feed.claim(T, D, claim("t0"))
    assert fresh.resume_from == "0-0" and not fresh.gap
    for n in range(20):
        await feed.append(T, [D], item(f"x{n}"))
    entries = await feed.read_after(T, D, "0-0")
    middle = entries[5][0]
    resumed = await feed.claim(T, D, claim("t1", after=middle))
    assert (resumed.resume_from, resumed.gap) == (middle, False)
    trimmed = await feed.claim(T, D, claim("t2", after="1-0"))
    assert trimmed.gap and trimmed.resume_from == entries[-1][0]
    # a feed lost with the tier: the client's id is newer than anything held
    assert grant("9999999999999-0", "", "0-0", False).gap
    assert grant("5-0", "3-0", "4-0", False).gap
    assert not grant("4-0", "3-0", "4-0", False).gap
    assert id_after("10-0", "9-5") and not id_after("9-5", "9-5")


async def test_renewal_takes_back_a_forgotten_owner_and_reports_replaced_and_revoked(
    tier: RedisTier,
) -> None:
    feed = make_feed(tier)
    await feed.claim(T, D, claim("t1"))
    await feed.claim(T, "dev-2", claim("t2"))
    await feed.claim(T, "dev-2", claim("t9", node="n2"))  # replaced elsewhere
    await tier.run(lambda r: r.delete(feed.owner_key(T, D)))  # the tier restarted empty
    await tier.run(lambda r: r.set(tier.key(T, "revoked", "s1"), b"1", ex=60))
    held = [Held(T, D, "t1", "s1"), Held(T, "dev-2", "t2", "s2")]
    renewal = await feed.renew("n1", held)
    assert [h.token for h in renewal.replaced] == ["t2"]
    assert [h.token for h in renewal.revoked] == ["t1"]
    assert [h.token for h in renewal.taken_back] == ["t1"]  # told to read its feed
    assert await tier.run(lambda r: r.get(feed.owner_key(T, D))) == b"n1 t1"


async def test_the_hub_hears_what_is_appended_for_its_streams_only(tier: RedisTier) -> None:
    feed = make_feed(tier)
    hub = StreamHub(feed, "n1", Metrics(), buffer=8, renew_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        await _wait_subscribed(hub)
        with (
            trio.CancelScope() as scope,
            hub.register(T, D, "t1", "s1", scope) as reg,
        ):
            await feed.claim(T, D, claim("t1"))
            await feed.append(T, [D, "dev-other"], item("a1"))
            with trio.fail_after(5):
                pushed = await reg.receive.receive()
            assert isinstance(pushed, Pushed) and pushed.item.key == "a1"
            assert pushed.prev == "0-0"
            await feed.claim(T, D, claim("t2", node="n2"))  # replaced on another node
            with trio.fail_after(5):
                told = await reg.receive.receive()
            assert told == Control("replaced", "t1")
        nursery.cancel_scope.cancel()


async def test_a_full_buffer_cuts_the_stream_off(tier: RedisTier) -> None:
    feed = make_feed(tier)
    hub = StreamHub(feed, "n1", Metrics(), buffer=2, renew_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        await _wait_subscribed(hub)
        with trio.CancelScope() as scope, hub.register(T, D, "t1", "s1", scope) as reg:
            await feed.claim(T, D, claim("t1"))
            for n in range(3):
                await feed.append(T, [D], item(f"a{n}"))
            await eventually(lambda: scope.cancel_called, 5)
            assert reg.cut == "slow_consumer"
        nursery.cancel_scope.cancel()


async def _wait_subscribed(hub: StreamHub) -> None:
    await eventually(lambda: hub.subscribed, 5)


async def test_a_drain_tells_every_stream_to_reconnect_and_cuts_what_stays(
    tier: RedisTier,
) -> None:
    feed = make_feed(tier)
    hub = StreamHub(feed, "n1", Metrics(), buffer=4, renew_s=60)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with (
            trio.CancelScope() as polite_scope,
            hub.register(T, D, "t1", "s1", polite_scope) as polite,
            trio.CancelScope() as stuck_scope,
            hub.register(T, "dev-2", "t2", "s2", stuck_scope),
        ):
            done = trio.Event()

            async def drain() -> None:
                assert await hub.drain(0.5) == 2
                done.set()

            nursery.start_soon(drain)
            with trio.fail_after(5):
                told = await polite.receive.receive()
            assert told == Control("reconnect") and hub.draining  # new streams: 503
            with trio.fail_after(5):
                await done.wait()
            assert stuck_scope.cancel_called  # still open at the deadline: cut off
        nursery.cancel_scope.cancel()


async def test_streams_of_a_suspended_tenant_are_told_to_end(tier: RedisTier) -> None:
    feed = make_feed(tier)

    async def suspended(tenant: str) -> bool:
        return tenant == T

    hub = StreamHub(feed, "n1", Metrics(), buffer=4, renew_s=60, suspended=suspended)
    with (
        trio.CancelScope() as scope,
        hub.register(T, D, "t1", "s1", scope) as mine,
        hub.register("tnt-b", D, "t2", "s2", scope) as other,
    ):
        await feed.claim(T, D, claim("t1"))
        await feed.claim("tnt-b", D, StreamClaim(token="t2", node="n1", session_id="s2"))
        await hub.renew_once()
        assert mine.receive.receive_nowait() == Control("suspended")
        with pytest.raises(trio.WouldBlock):
            other.receive.receive_nowait()


async def test_a_stream_not_yet_granted_is_not_told_it_was_replaced(tier: RedisTier) -> None:
    """A stream registers before it claims the device; a renewal in between (the owner record
    still names the previous stream) must not call the new one replaced. Once granted, it is
    renewed, and a later claim elsewhere does replace it."""
    feed = make_feed(tier)
    hub = StreamHub(feed, "n2", Metrics(), buffer=4, renew_s=60)
    await feed.claim(T, D, claim("old", node="n1"))
    with trio.CancelScope() as scope, hub.register(T, D, "new", "s1", scope) as reg:
        await hub.renew_once()  # registered, not yet claimed
        with pytest.raises(trio.WouldBlock):
            reg.receive.receive_nowait()
        await feed.claim(T, D, claim("new", node="n2"))
        reg.claimed = True
        await hub.renew_once()
        with pytest.raises(trio.WouldBlock):
            reg.receive.receive_nowait()
        assert await tier.run(lambda r: r.get(feed.owner_key(T, D))) == b"n2 new"
        await feed.claim(T, D, claim("newer", node="n3"))
        await hub.renew_once()
        assert reg.receive.receive_nowait() == Control("replaced", "new")
