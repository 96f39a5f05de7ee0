"""The Redis session tier's side of revocations (``SessionStore``, real Redis): a revocation
marker written from ``(tenant, sessionId)`` alone that remembers the holding device, and the
operator index losing a device when the operator's session there closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from edge.auth.sessions import RevokedSessions, SessionStore
from edge.redis_tier import RedisTier
from schemas.sessions import BackofficeSession
from tests.support.fixtures import REDIS_URL

T = "tnt-a"


@pytest.fixture
async def store(aio_loop: object, redis_prefix: str) -> AsyncIterator[SessionStore]:
    tier = RedisTier("session", REDIS_URL, redis_prefix, timeout=2.0)
    await tier.open()
    try:
        yield SessionStore(tier, RevokedSessions())
    finally:
        await tier.close()


def session(sid: str, operator: str, device_id: str = "d1") -> BackofficeSession:
    return BackofficeSession(
        session_id=sid,
        tenant=T,
        operator_id=operator,
        device_id=device_id,
        role="front_desk",
        property_ids=("p1",),
        jkt="k",
        opened_at=datetime.now(UTC),
    )


async def marked(store: SessionStore, sid: str) -> bool:
    """What every instance's auth chain reads (``EXISTS revoked:<sid>``)."""
    return bool(await store.tier.run(lambda r: r.exists(store.revoked_key(T, sid))))


async def test_revoke_marks_the_session_first_and_names_its_device(store: SessionStore) -> None:
    await store.open(session("s-x", "opr-x"))
    assert await store.revoke(T, "s-x") == "d1"
    assert await marked(store, "s-x") and (T, "s-x") in store.revoked
    assert await store.revoke(T, "s-x") == "d1"  # idempotent
    assert await store.revoke(T, "s-never-seen") is None  # revoked all the same
    assert await marked(store, "s-never-seen")


async def test_after_a_close_the_marker_still_names_the_device(store: SessionStore) -> None:
    """One instance's actor closed it (blob gone); another instance consuming the same event
    must still find the device whose streams it has to tell."""
    await store.open(session("s-x", "opr-x"))
    await store.close(T, "s-x", "d1")
    assert await store.revoke(T, "s-x") == "d1"
    assert await store.current(T, "d1") is None


async def test_closing_a_session_takes_the_device_out_of_its_operators_index(
    store: SessionStore,
) -> None:
    """...unless the device's current session is still that operator's."""
    await store.open(session("s-x", "opr-x"))
    await store.open(session("s-y", "opr-y"))  # Y signs in on X's desk
    await store.open(session("s-x2", "opr-x", "d2"))
    await store.open(session("s-x3", "opr-x", "d2"))  # X signed in again on desk d2
    assert await store.devices_of(T, "opr-x") == ["d1", "d2"]
    await store.close(T, "s-x", "d1")
    await store.close(T, "s-x2", "d2")
    assert await store.devices_of(T, "opr-x") == ["d2"]  # d2's current session is X's
    assert await store.devices_of(T, "opr-y") == ["d1"]
    assert await store.current(T, "d1") == "s-y"  # not X's session: left alone
    assert await store.current(T, "d2") == "s-x3"
    await store.close(T, "s-y", "d1")
    await store.close(T, "s-x3", "d2")
    assert await store.devices_of(T, "opr-x") == [] and await store.devices_of(T, "opr-y") == []
    assert await store.current(T, "d1") is None and await store.current(T, "d2") is None
