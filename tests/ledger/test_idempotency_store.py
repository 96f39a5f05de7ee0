"""Idempotency keys against a real Postgres: claim, replay, reuse, in flight, takeover once the
lease is over (not before), release, a claim that lost its key, expiry, pruning, racing claims
(exactly one runs), scope isolation (tenants and devices never share a key) and an unreachable
Postgres surfacing as DatabaseUnavailable."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import trio

from ledger.database import Database, DatabaseUnavailable
from ledger.idempotency import (
    Claimed,
    IdempotencyStore,
    InFlight,
    Replay,
    Reused,
    StoredResponse,
)

T, D = "tnt-a", "dev-1"
ANSWER = StoredResponse(
    status=201,
    body=b'{"ok":true}',
    content_type="application/json; charset=utf-8",
    headers=(("Cache-Control", "no-store"), ("Location", "/things/1")),
)


def fp(text: str = "request-1") -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.fixture
def store(db: Database) -> IdempotencyStore:
    return IdempotencyStore(db)


async def claimed(store: IdempotencyStore, key: str = "k-1", **scope: str) -> Claimed:
    outcome = await store.claim(scope.get("tenant", T), scope.get("device", D), key, fp())
    assert isinstance(outcome, Claimed), outcome
    return outcome


async def rows(db: Database) -> list[tuple[str, str, str, str]]:
    found = await db.fetch(
        "SELECT tenant, device_id, key, state FROM idempotency_keys ORDER BY 1, 2, 3"
    )
    return [(r["tenant"], r["device_id"], r["key"], r["state"]) for r in found]


async def test_a_completed_request_is_replayed_byte_for_byte(
    store: IdempotencyStore, db: Database
) -> None:
    claim = await claimed(store)
    assert claim.taken_over is False
    assert await rows(db) == [(T, D, "k-1", "in_flight")]
    assert await store.complete(claim, ANSWER) is True
    again = await store.claim(T, D, "k-1", fp())
    assert again == Replay(ANSWER)
    assert await rows(db) == [(T, D, "k-1", "done")]
    assert await store.complete(claim, ANSWER) is False  # done once; never rewritten


async def test_the_same_key_for_another_request_is_reused(store: IdempotencyStore) -> None:
    claim = await claimed(store)
    assert await store.claim(T, D, "k-1", fp("request-2")) == Reused()  # while in flight
    await store.complete(claim, ANSWER)
    assert await store.claim(T, D, "k-1", fp("request-2")) == Reused()  # and once done


async def test_a_running_request_is_in_flight_until_its_lease_ends(db: Database) -> None:
    long = IdempotencyStore(db, lease_s=30)
    first = await claimed(long)
    busy = await long.claim(T, D, "k-1", fp())
    assert isinstance(busy, InFlight) and 0 < busy.lease_left_s <= 30

    # A holder whose lease is over (lease 0: over at once) crashed as far as anyone can tell.
    short = IdempotencyStore(db, lease_s=0)
    crashed = await claimed(short, "k-2")
    taken = await short.claim(T, D, "k-2", fp())
    assert isinstance(taken, Claimed) and taken.taken_over is True
    assert taken.token != crashed.token
    # The crashed holder's late answers touch nothing: the key is the new holder's now.
    assert await short.complete(crashed, ANSWER) is False
    assert await short.release(crashed) is False
    assert await short.complete(taken, ANSWER) is True
    assert await short.claim(T, D, "k-2", fp()) == Replay(ANSWER)
    assert await long.complete(first, ANSWER) is True


async def test_a_released_key_runs_again(store: IdempotencyStore, db: Database) -> None:
    claim = await claimed(store)
    assert await store.release(claim) is True
    assert await rows(db) == []
    again = await claimed(store)
    assert again.taken_over is False
    assert await store.release(claim) is False  # the old claim cannot drop the new one
    assert await rows(db) == [(T, D, "k-1", "in_flight")]


async def test_an_expired_key_is_forgotten_before_the_cleanup_runs(db: Database) -> None:
    brief = IdempotencyStore(db, ttl_s=0)  # expired as soon as written
    await brief.complete(await claimed(brief), ANSWER)
    fresh = await brief.claim(T, D, "k-1", fp("a-new-request"))
    assert isinstance(fresh, Claimed) and fresh.taken_over is False


async def test_prune_deletes_expired_rows_only(db: Database) -> None:
    kept = IdempotencyStore(db)
    brief = IdempotencyStore(db, ttl_s=0)
    for n in range(7):
        await brief.complete(await claimed(brief, f"old-{n}"), ANSWER)
    await claimed(brief, "old-running")
    await kept.complete(await claimed(kept, "new-done"), ANSWER)
    await claimed(kept, "new-running")
    assert await kept.prune(batch=3) == 8  # three statements of at most three rows
    assert await rows(db) == [(T, D, "new-done", "done"), (T, D, "new-running", "in_flight")]
    assert await kept.prune() == 0


async def test_tenants_and_devices_never_share_a_key(store: IdempotencyStore) -> None:
    scopes = [("tnt-a", "dev-1"), ("tnt-b", "dev-1"), ("tnt-a", "dev-2")]
    claims = [await claimed(store, "same", tenant=t, device=d) for t, d in scopes]
    answers = [
        StoredResponse(status=200, body=f"{t}/{d}".encode(), content_type="text/plain")
        for t, d in scopes
    ]
    for claim, answer in zip(claims, answers, strict=True):
        assert await store.complete(claim, answer) is True
    for (tenant, device), answer in zip(scopes, answers, strict=True):
        assert await store.claim(tenant, device, "same", fp()) == Replay(answer)
    assert isinstance(await store.claim("tnt-c", "dev-1", "same", fp("other")), Claimed)


async def test_racing_claims_let_exactly_one_run(store: IdempotencyStore) -> None:
    outcomes: list[object] = []

    async def one() -> None:
        outcomes.append(await store.claim(T, D, "race", fp()))

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(one)
    winners = [o for o in outcomes if isinstance(o, Claimed)]
    assert len(winners) == 1 and winners[0].taken_over is False
    assert all(isinstance(o, InFlight) for o in outcomes if o is not winners[0])


async def test_a_response_without_headers_round_trips(store: IdempotencyStore) -> None:
    bare = StoredResponse(status=404, body=b"", content_type="application/json")
    await store.complete(await claimed(store), bare)
    assert await store.claim(T, D, "k-1", fp()) == Replay(bare)


async def test_unreachable_postgres_is_database_unavailable(aio_loop: object) -> None:
    dead = Database("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.5)
    await dead.open()
    store = IdempotencyStore(dead)
    claim = Claimed(tenant=T, device_id=D, key="k", token=uuid.uuid4())
    try:
        with pytest.raises(DatabaseUnavailable):
            await store.claim(T, D, "k", fp())
        with pytest.raises(DatabaseUnavailable):
            await store.complete(claim, ANSWER)
        with pytest.raises(DatabaseUnavailable):
            await store.release(claim)
        with pytest.raises(DatabaseUnavailable):
            await store.prune()
    finally:
        await dead.close()
