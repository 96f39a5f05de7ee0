"""The session store remembers what this process revoked, even when the session tier is down."""

import pytest

from edge.auth.sessions import RevokedSessions, SessionStore
from edge.redis_tier import RedisTier, TierUnavailable
from tests.support.procs import free_port


async def test_close_is_remembered_locally_when_the_tier_is_down(aio_loop: object) -> None:
    dead = RedisTier("session", f"redis://127.0.0.1:{free_port()}/0", "t", timeout=0.5)
    await dead.open()
    try:
        store = SessionStore(dead, RevokedSessions())
        with pytest.raises(TierUnavailable):
            await store.close("tnt-a", "ses-1", "dev-1")
        assert ("tnt-a", "ses-1") in store.revoked
        assert ("tnt-b", "ses-1") not in store.revoked  # tenant-scoped
    finally:
        await dead.close()


def test_revoked_memory_is_bounded() -> None:
    revoked = RevokedSessions(capacity=2)
    for sid in ("a", "b", "c"):
        revoked.add("t", sid)
    assert ("t", "a") not in revoked and ("t", "c") in revoked
