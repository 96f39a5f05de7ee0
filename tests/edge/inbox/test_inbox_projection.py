"""The inbox projections against a real Redis: events in and out, acknowledgements, tombstones
against redelivery, the size bound, every key's TTL, expired suggestions, read-through fills,
tenant isolation, and an unreachable tier surfacing as TierUnavailable."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import trio

from edge.inbox.projection import RedisInboxes
from edge.redis_tier import RedisTier, TierUnavailable, text
from schemas.inbox import AlertAck, AlertItem, AlertRaised, SuggestionCreated, SuggestionItem
from tests.support.procs import free_port
from tests.support.waiting import eventually

T = "tnt-a"
P = "prop-1"


def now() -> datetime:
    """Read per call: the projection compares against the wall clock, and a module-level
    constant grows stale over a long test session."""
    return datetime.now(UTC).replace(microsecond=0)


def raised(alert_id: str, minutes_ago: float = 0, tenant: str = T) -> AlertRaised:
    return AlertRaised(
        tenant_id=tenant,
        property_id=P,
        alert_id=alert_id,
        severity="warning",
        category="maintenance",
        title=f"alert {alert_id}",
        occurred_at=now() - timedelta(minutes=minutes_ago),
    )


def created(sid: str, expires_in_min: float = 60, minutes_ago: float = 0) -> SuggestionCreated:
    return SuggestionCreated(
        tenant_id=T,
        property_id=P,
        suggestion_id=sid,
        category="pricing",
        title=f"suggestion {sid}",
        confidence=0.8,
        expires_at=datetime.now(UTC) + timedelta(minutes=expires_in_min),
        occurred_at=now() - timedelta(minutes=minutes_ago),
    )


def item(sid: str, minutes_ago: float = 0) -> SuggestionItem:
    return SuggestionItem(
        suggestion_id=sid,
        property_id=P,
        category="upsell",
        title=f"from ai {sid}",
        confidence=0.5,
        expires_at=now() + timedelta(hours=1),
        created_at=now() - timedelta(minutes=minutes_ago),
        summary="s",
    )


def ack(alert_id: str) -> AlertAck:
    return AlertAck(
        tenant=T, property_id=P, alert_id=alert_id, operator_id="op-1", device_id="d-1", at=now()
    )


@pytest.fixture
def inboxes(tier: RedisTier) -> RedisInboxes:
    return RedisInboxes(tier, ttl_s=60, max_items=5)


async def ids(inboxes: RedisInboxes, tenant: str = T) -> set[str]:
    return {a.alert_id for a in await inboxes.alerts(tenant, P)}


async def test_alerts_follow_their_events(inboxes: RedisInboxes) -> None:
    await inboxes.put_alert(T, raised("alr-1"))
    await inboxes.put_alert(T, raised("alr-2"))
    await inboxes.mark_acknowledged(T, ack("alr-2"))
    await inboxes.mark_acknowledged(T, ack("alr-unknown"))  # not held: nothing to mark
    got = {a.alert_id: a for a in await inboxes.alerts(T, P)}
    assert set(got) == {"alr-1", "alr-2"}
    assert got["alr-1"].status == "open" and got["alr-1"].title == "alert alr-1"
    assert got["alr-2"].status == "acknowledged" and got["alr-2"].acknowledged_by == "op-1"
    await inboxes.drop_alert(T, P, "alr-2")
    await inboxes.put_alert(T, raised("alr-2"))  # a redelivered raise after the resolve
    assert await ids(inboxes) == {"alr-1"}


async def test_size_is_bounded_oldest_evicted(inboxes: RedisInboxes, tier: RedisTier) -> None:
    for n in range(8):
        await inboxes.put_alert(T, raised(f"alr-{n}", minutes_ago=10 - n))  # alr-7 newest
        await inboxes.mark_acknowledged(T, ack(f"alr-{n}"))
    assert await ids(inboxes) == {f"alr-{n}" for n in range(3, 8)}
    items, order, _, acks, _ = inboxes.keys(T, P, "alerts")
    sizes = await tier.run(lambda r: _sizes(r, items, order, acks))
    assert sizes == [5, 5, 5]
    for n in range(20):
        await inboxes.drop_alert(T, P, f"gone-{n}")
    gone = inboxes.keys(T, P, "alerts")[2]
    assert await tier.run(lambda r: r.zcard(gone)) == 5  # tombstones are bounded too


async def _sizes(r: object, items: str, order: str, acks: str) -> list[int]:
    return [await r.hlen(items), await r.zcard(order), await r.hlen(acks)]  # type: ignore[attr-defined]


async def test_every_key_has_a_ttl_and_the_inbox_expires(tier: RedisTier) -> None:
    inboxes = RedisInboxes(tier, ttl_s=0.5)
    await inboxes.put_alert(T, raised("alr-1"))
    await inboxes.mark_acknowledged(T, ack("alr-1"))
    await inboxes.drop_alert(T, P, "alr-0")
    await inboxes.put_suggestion(T, created("sug-1"))
    await inboxes.fill_suggestions(T, P, [item("sug-2")], time.time())
    keys = inboxes.keys(T, P, "alerts") + inboxes.keys(T, P, "suggestions")
    found = {text(k) for k in await tier.run(lambda r: r.keys(f"{tier.prefix}:*"))}
    assert found and found <= set(keys)
    for key in found:
        ttl = await tier.run(lambda r: r.pttl(key))  # noqa: B023 (awaited at once)
        assert 0 < ttl <= 500, (key, ttl)

    async def all_gone() -> bool:
        return not await tier.run(lambda r: r.keys(f"{tier.prefix}:*"))

    await eventually(all_gone, timeout=5)
    assert await inboxes.alerts(T, P) == []
    assert await inboxes.suggestions(T, P) == (False, [])


async def test_expired_suggestions_are_not_served(inboxes: RedisInboxes, tier: RedisTier) -> None:
    await inboxes.put_suggestion(T, created("sug-live"))
    await inboxes.put_suggestion(T, created("sug-old", expires_in_min=-1))
    loaded, items = await inboxes.suggestions(T, P)
    assert loaded is False
    assert [s.suggestion_id for s in items] == ["sug-live"]
    assert items[0].expires_at > datetime.now(UTC)
    key = inboxes.keys(T, P, "suggestions")[0]
    assert await tier.run(lambda r: r.hkeys(key)) == [b"sug-live"]  # forgotten, not only hidden


async def test_fill_marks_loaded_and_replaces_what_the_list_lacks(inboxes: RedisInboxes) -> None:
    await inboxes.put_suggestion(T, created("sug-stale", minutes_ago=30))  # gone upstream
    await inboxes.put_suggestion(T, created("sug-new"))  # arrived after the list was read
    await inboxes.drop_suggestion(T, P, "sug-decided")  # decided while the list was read
    listed = [item("sug-a", 5), item("sug-b", 1), item("sug-decided", 2)]
    await inboxes.fill_suggestions(T, P, listed, time.time() - 1)
    loaded, items = await inboxes.suggestions(T, P)
    assert loaded is True
    assert [s.suggestion_id for s in items] == ["sug-new", "sug-b", "sug-a"]
    assert items[1].summary == "s"
    await inboxes.drop_suggestion(T, P, "sug-b")
    assert [s.suggestion_id for s in (await inboxes.suggestions(T, P))[1]] == ["sug-new", "sug-a"]
    await inboxes.put_suggestion(T, created("sug-a"))  # a redelivered event: nothing new
    [kept] = [s for s in (await inboxes.suggestions(T, P))[1] if s.suggestion_id == "sug-a"]
    assert kept.summary == "s" and kept.category == "upsell"  # ai-orchestrator's copy stays


async def test_only_a_read_through_keeps_the_inbox_loaded(tier: RedisTier) -> None:
    inboxes = RedisInboxes(tier, ttl_s=0.6)
    await inboxes.fill_suggestions(T, P, [item("sug-a")], time.time())
    loaded_key = inboxes.keys(T, P, "suggestions")[4]
    assert await tier.run(lambda r: r.pttl(loaded_key)) > 0

    async def unloaded() -> bool:
        await inboxes.put_suggestion(T, created(f"sug-{time.monotonic_ns()}"))  # keeps items
        return not (await inboxes.suggestions(T, P))[0]

    await eventually(unloaded, timeout=5)  # reconciled with ai-orchestrator at least every TTL
    assert len((await inboxes.suggestions(T, P))[1]) >= 2


async def test_alert_fill_keeps_acks_of_listed_alerts(inboxes: RedisInboxes) -> None:
    await inboxes.put_alert(T, raised("alr-old", minutes_ago=60))
    await inboxes.put_alert(T, raised("alr-1", minutes_ago=5))
    await inboxes.mark_acknowledged(T, ack("alr-1"))
    listed = AlertItem(
        alert_id="alr-1",
        property_id=P,
        severity="critical",
        category="payment",
        title="from notification",
        status="open",
        raised_at=now() - timedelta(minutes=5),
        message="m",
    )
    await inboxes.fill_alerts(T, P, [listed], time.time())
    [only] = await inboxes.alerts(T, P)
    assert only.alert_id == "alr-1" and only.message == "m" and only.status == "acknowledged"


async def test_tenants_are_isolated(inboxes: RedisInboxes) -> None:
    await inboxes.put_alert(T, raised("alr-1"))
    await inboxes.put_alert("tnt-b", raised("alr-2", tenant="tnt-b"))
    await inboxes.drop_alert("tnt-b", P, "alr-1")
    assert await ids(inboxes) == {"alr-1"}
    assert await ids(inboxes, "tnt-b") == {"alr-2"}
    assert all(f":{T}:" in key for key in inboxes.keys(T, P, "alerts"))


async def test_an_unreachable_tier_is_tier_unavailable(aio_loop: object) -> None:
    dead = RedisTier("cache", f"redis://127.0.0.1:{free_port()}/0", "t", timeout=0.5)
    await dead.open()
    try:
        inboxes = RedisInboxes(dead, ttl_s=60)
        with pytest.raises(TierUnavailable):
            await inboxes.put_alert(T, raised("alr-1"))
        with pytest.raises(TierUnavailable):
            await inboxes.suggestions(T, P)
        with trio.fail_after(5), pytest.raises(TierUnavailable):
            await inboxes.alerts(T, P)
    finally:
        await dead.close()
