"""The sync routes over real HTTP (a BFF process, the simulator's sync-service, Redis,
Postgres, DPoP desktops): the cursor never moves backwards — also under concurrent advances —
and is recorded once per change; the handshake grants a direct sync session, resets a diverged
cursor cache to sync-service's authoritative cursor (F-35) and, with sync-service down or slow,
tells the desktop to stay offline and retry in 30 s (F-13); the offline-queue hint and the
heartbeat's sync fields are stored; another device's id is DEVICE_MISMATCH; bad input names
its field. And, in process: the cache tier's copy keeps the newest revision and serves reads
while Postgres is down."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from actors.ports import CachedCursor
from edge.redis_tier import RedisTier
from edge.sync_cursors import CursorReader, RedisSyncCursors
from ledger.database import Database, DatabaseUnavailable
from ledger.device_status import DeviceStatusStore
from schemas.actor_events import CURSOR_ADVANCED, HANDSHAKE_COMPLETED
from schemas.sync_registry import SCOPES
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"
T = "tnt-demo"
FAST = {"BFF_BREAKER_OPEN_S": "0.5"}  # a circuit opened by a test's outage closes soon after


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, **FAST)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def advance(desk: Desktop, cursor: str, **headers: str) -> httpx.Response:
    body = {"deviceId": desk.device_id, "cursor": cursor}
    return desk.post(f"{BASE}/sync/cursor", json=body, headers=headers)


def read_cursor(desk: Desktop, device_id: str | None = None) -> httpx.Response:
    return desk.get(f"{BASE}/sync/cursor", params={"deviceId": device_id or desk.device_id})


def handshake(desk: Desktop, **body: Any) -> httpx.Response:
    return desk.post(f"{BASE}/sync/handshake", json={"deviceId": desk.device_id, **body})


def sim_cursor(sim: SimHandle, desk: Desktop, value: int | None = None) -> int:
    """sync-service's authoritative cursor of the device (moved forward to ``value`` first)."""
    path = f"/sync/v1/tenants/{T}/devices/{desk.device_id}/cursor"
    if value is not None:
        sim.post(path, json={"cursorVersion": value})
    cursor: int = sim.get(path)["cursorVersion"]
    return cursor


def events(database_url: str, desk: Desktop, subject: str) -> list[dict[str, Any]]:
    return [p for s, p in ledger_subjects(database_url, f"device:{desk.device_id}") if s == subject]


def metric(bff: ServiceProcess, name: str, **labels: str) -> float:
    """The value of one labelled sample on ``/metrics`` (0 when absent)."""
    for line in httpx.get(f"{bff.url}/metrics", timeout=10).text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


# --- the cursor ------------------------------------------------------------------------------


def test_cursor_moves_forward_only_and_each_change_is_recorded_once(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    empty = {"deviceId": fd.device_id, "cursor": None, "updatedAt": None, "source": None}
    assert ok(read_cursor(fd)) == empty

    first = ok(advance(fd, "100"))
    assert (first["cursor"], first["advanced"]) == ("100", True)
    assert sim_cursor(sim, fd) == 100  # sync-service, the authority, was told first

    for older in ("99", "0", "100"):
        stale = advance(fd, older)
        assert stale.status_code == 200  # a stale advance is not an error: nothing moves
        assert (stale.json()["cursor"], stale.json()["advanced"]) == ("100", False)
    later = ok(advance(fd, "4200"))
    assert (later["cursor"], later["advanced"]) == ("4200", True)

    view = ok(read_cursor(fd))
    assert (view["cursor"], view["source"]) == ("4200", "device")
    assert sim_cursor(sim, fd) == 4200
    recorded = events(database_url, fd, CURSOR_ADVANCED)
    assert [(e["cursor"], e["previous"], e["revision"]) for e in recorded] == [
        ("100", None, 1),
        ("4200", "100", 2),
    ]


def test_concurrent_advances_never_move_the_cursor_backwards(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    values = random.Random(7).sample(range(1, 1_000_000), 40)

    def send(value: int) -> tuple[int, dict[str, Any]]:
        return value, ok(advance(fd, str(value)))

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, values))

    for asked, answer in answers:
        assert int(answer["cursor"]) >= asked  # never behind what this call asked
    assert ok(read_cursor(fd))["cursor"] == str(max(values))
    assert sim_cursor(sim, fd) == max(values)
    recorded = events(database_url, fd, CURSOR_ADVANCED)
    cursors = [int(e["cursor"]) for e in recorded]
    assert cursors == sorted(set(cursors)) and cursors[-1] == max(values)  # only ever forward
    assert [e["revision"] for e in recorded] == list(range(1, len(recorded) + 1))


def test_an_advance_with_an_idempotency_key_reaches_sync_service_once(
    fd: Desktop, sim: SimHandle
) -> None:
    first = advance(fd, "300", **{"Idempotency-Key": "adv-300"})
    again = advance(fd, "300", **{"Idempotency-Key": "adv-300"})
    assert ok(first) == ok(again)
    assert again.headers.get("Idempotent-Replayed") == "true"
    calls = [c for c in sim.calls("sync") if c["path"].endswith(f"{fd.device_id}/cursor")]
    assert [c["idempotencyKey"] for c in calls] == ["adv-300"]


def test_an_advance_sync_service_did_not_take_changes_nothing(fd: Desktop, sim: SimHandle) -> None:
    ok(advance(fd, "10"))
    sim.fault("sync", "error")
    body = error(advance(fd, "20"), 502, "UPSTREAM_UNAVAILABLE")
    assert body["retryable"] is True
    sim.clear_faults()
    assert ok(read_cursor(fd))["cursor"] == "10"


# --- the handshake ---------------------------------------------------------------------------


def test_handshake_grants_a_direct_sync_session(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    answer = handshake(fd)
    body = ok(answer)
    assert answer.headers["cache-control"] == "no-store"
    assert body["syncSessionToken"].startswith("sst_")
    assert body["syncUrl"].endswith(f"/sync/v1/tenants/{T}/devices/{fd.device_id}/pull")
    assert 0 < body["expiresIn"] <= 15 * 60
    assert (body["cursor"], body["mode"], body["cursorReset"]) == ("0", "full", False)
    assert body["scopes"] == list(SCOPES)
    calls = [c for c in sim.calls("sync", kind="all") if c["path"].endswith("/handshake")]
    assert len(calls) == 1 and calls[0]["body"]["operatorId"]

    ok(advance(fd, "4100"))
    again = ok(handshake(fd, scopes=["reservations", "folios"]))
    assert (again["cursor"], again["mode"], again["cursorReset"]) == ("4100", "delta", False)
    assert again["scopes"] == ["reservations", "folios"]

    recorded = events(database_url, fd, HANDSHAKE_COMPLETED)
    assert [(e["cursor"], e["cachedCursor"], e["cursorReset"]) for e in recorded] == [
        ("0", None, False),
        ("4100", "4100", False),
    ]
    assert all("syncSessionToken" not in e and "sst_" not in str(e) for e in recorded)


def test_a_diverged_cursor_cache_is_reset_from_sync_service(
    bff: ServiceProcess, fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    ok(advance(fd, "100"))
    sim_cursor(sim, fd, 5000)  # sync-service moved on without the BFF (F-35: cache behind)

    body = ok(handshake(fd))
    assert (body["cursor"], body["cursorReset"]) == ("5000", True)
    view = ok(read_cursor(fd))
    assert (view["cursor"], view["source"]) == ("5000", "sync_service")
    assert metric(bff, "bff_sync_cursor_divergences_total", direction="behind") == 1

    # The heartbeat says the device is further than sync-service knows (cache ahead): the
    # authoritative cursor wins, downwards too.
    beat = {"appVersion": "1.4.0", "syncCursor": "9000"}
    ok(fd.post(f"{BASE}/devices/{fd.device_id}/heartbeat", json=beat))
    assert ok(read_cursor(fd))["cursor"] == "9000"
    body = ok(handshake(fd))
    assert (body["cursor"], body["cursorReset"]) == ("5000", True)
    assert ok(read_cursor(fd))["cursor"] == "5000"
    assert metric(bff, "bff_sync_cursor_divergences_total", direction="ahead") == 1

    recorded = events(database_url, fd, HANDSHAKE_COMPLETED)
    assert [(e["cachedCursor"], e["cursor"], e["cursorReset"]) for e in recorded] == [
        ("100", "5000", True),
        ("9000", "5000", True),
    ]
    same = ok(handshake(fd))  # in agreement now: nothing to reset
    assert (same["cursor"], same["cursorReset"]) == ("5000", False)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"mode": "error"}, 502, "UPSTREAM_UNAVAILABLE"),
        ({"mode": "latency", "latency_ms": 1500}, 504, "UPSTREAM_TIMEOUT"),
    ],
)
def test_sync_service_down_or_slow_keeps_the_desktop_offline_for_30_s(
    fd: Desktop, sim: SimHandle, fault: dict[str, Any], status: int, code: str
) -> None:
    sim.fault("sync", **fault)
    answer = handshake(fd)
    body = error(answer, status, code)
    assert body["retryable"] is True
    assert answer.headers["retry-after"] == "30"
    assert "stay offline" in body["message"] and "30 s" in body["message"]
    sim.clear_faults()
    wait_until(lambda: handshake(fd).status_code == 200, 10, "the circuit to close")


# --- the offline-queue hint and the heartbeat's sync fields ----------------------------------


def test_offline_queue_hint_is_stored(fd: Desktop, database_url: str) -> None:
    oldest = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    body = {"deviceId": fd.device_id, "queuedActions": 12, "oldestQueuedAt": oldest.isoformat()}
    answer = ok(fd.post(f"{BASE}/offline-queue/hint", json=body))
    assert (answer["queuedActions"], answer["deviceId"]) == (12, fd.device_id)
    assert datetime.fromisoformat(answer["oldestQueuedAt"]) == oldest
    row = status_row(database_url, fd.device_id)
    assert (row["queued_actions"], row["oldest_queued_at"]) == (12, oldest)

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    late = {"deviceId": fd.device_id, "queuedActions": 1, "oldestQueuedAt": future}
    message = error(fd.post(f"{BASE}/offline-queue/hint", json=late), 400, "VALIDATION_FAILED")
    assert message["message"].startswith("oldestQueuedAt")


def test_heartbeat_sync_fields_update_device_sync_status(fd: Desktop, database_url: str) -> None:
    online = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    beat = {
        "appVersion": "1.4.0",
        "syncCursor": "321",
        "queuedActions": 4,
        "onlineSince": online.isoformat(),
    }
    ok(fd.post(f"{BASE}/devices/{fd.device_id}/heartbeat", json=beat))
    row = status_row(database_url, fd.device_id)
    assert (row["cursor_version"], row["cursor_source"]) == (321, "heartbeat")
    assert (row["queued_actions"], row["online_since"]) == (4, online)
    assert ok(read_cursor(fd))["cursor"] == "321"

    older = {"appVersion": "1.4.0", "syncCursor": "7", "queuedActions": 0}
    ok(fd.post(f"{BASE}/devices/{fd.device_id}/heartbeat", json=older))
    row = status_row(database_url, fd.device_id)
    assert (row["cursor_version"], row["queued_actions"]) == (321, 0)  # cursor: forward only
    assert [e["cursor"] for e in events(database_url, fd, CURSOR_ADVANCED)] == ["321"]

    bad = {"appVersion": "1.4.0", "syncCursor": "-3"}
    message = error(
        fd.post(f"{BASE}/devices/{fd.device_id}/heartbeat", json=bad), 400, "VALIDATION_FAILED"
    )
    assert "syncCursor" in message["message"]


# --- who may call, and what ------------------------------------------------------------------


def test_another_devices_id_is_device_mismatch(fd: Desktop, sim: SimHandle) -> None:
    other = "dev-someone-else"
    error(read_cursor(fd, other), 403, "DEVICE_MISMATCH")
    advance_other = {"deviceId": other, "cursor": "5"}
    error(fd.post(f"{BASE}/sync/cursor", json=advance_other), 403, "DEVICE_MISMATCH")
    error(fd.post(f"{BASE}/sync/handshake", json={"deviceId": other}), 403, "DEVICE_MISMATCH")
    hint = {"deviceId": other, "queuedActions": 1}
    error(fd.post(f"{BASE}/offline-queue/hint", json=hint), 403, "DEVICE_MISMATCH")
    assert not [c for c in sim.calls("sync", kind="all") if other in c["path"]]


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("/sync/cursor", {"cursor": "5"}, "deviceId"),
    ("/sync/cursor", {"cursor": "-1"}, "cursor"),
    ("/sync/cursor", {"cursor": "007"}, "cursor"),
    ("/sync/cursor", {"cursor": "1" * 19}, "cursor"),
    ("/sync/cursor", {"cursor": 5}, "cursor"),
    ("/sync/cursor", {"cursor": "5", "extra": 1}, "extra"),
    ("/sync/handshake", {"scopes": ["rooms", "GuestSession"]}, "scopes[1]"),
    ("/sync/handshake", {"scopes": ["rooms", "rooms"]}, "scopes[1]"),
    ("/sync/handshake", {"scopes": []}, "scopes"),
    ("/offline-queue/hint", {"queuedActions": -1}, "queuedActions"),
    ("/offline-queue/hint", {"queuedActions": 10**7}, "queuedActions"),
    ("/offline-queue/hint", {}, "queuedActions"),
    ("/offline-queue/hint", {"queuedActions": 1, "oldestQueuedAt": "2026-01-01T10:00"}, "oldest"),
]


def test_validation_failures_name_the_field(fd: Desktop, sim: SimHandle) -> None:
    for path, fields, field in INVALID:
        body = fields if field == "deviceId" else {"deviceId": fd.device_id, **fields}
        answer = fd.post(BASE + path, json=body)
        message = error(answer, 400, "VALIDATION_FAILED")["message"]
        assert field in message, (path, fields, message)
    assert not sim.calls("sync", kind="all")  # nothing invalid reached sync-service


def test_reading_the_cursor_needs_a_device_id(fd: Desktop) -> None:
    message = error(fd.get(f"{BASE}/sync/cursor"), 400, "VALIDATION_FAILED")["message"]
    assert "deviceId" in message


# --- the cache tier's copy (in process) ------------------------------------------------------


async def test_the_cache_copy_keeps_the_newest_revision_and_serves_a_postgres_outage(
    tier: RedisTier, db: Database
) -> None:
    copies = RedisSyncCursors(tier, ttl_s=60)
    at = datetime.now(UTC)
    await copies.put(T, "dev-1", CachedCursor(cursor=500, revision=3, at=at, source="device"))
    await copies.put(T, "dev-1", CachedCursor(cursor=400, revision=2, at=at, source="device"))
    held = await copies.get(T, "dev-1")
    assert held is not None and (held.cursor, held.revision, held.at) == (500, 3, at)
    raw = redis.Redis.from_url(REDIS_URL)
    try:
        ttl = raw.pttl(copies.key(T, "dev-1"))
        assert 0 < int(ttl) <= 60_000
        assert f":{T}:device:dev-1:" in copies.key(T, "dev-1")
    finally:
        raw.close()
    assert await copies.get("tnt-other", "dev-1") is None  # per tenant

    reader = CursorReader(DeviceStatusStore(db), copies)
    assert await reader.read(T, "dev-1") == (None, "postgres")  # Postgres is the authority

    down = Database("postgresql://postgres@127.0.0.1:1/none", timeout=0.5)
    await down.open()
    try:
        fallback = CursorReader(DeviceStatusStore(down), copies)
        assert await fallback.read(T, "dev-1") == (held, "cache_tier")
        dead = RedisTier("cache", "redis://127.0.0.1:1/0", "x", timeout=0.3)
        await dead.open()
        both_down = CursorReader(DeviceStatusStore(down), RedisSyncCursors(dead, ttl_s=1))
        with pytest.raises(DatabaseUnavailable):
            await both_down.read(T, "dev-1")
        await dead.close()
    finally:
        await down.close()


def status_row(database_url: str, device_id: str) -> dict[str, Any]:
    import asyncpg
    import trio
    import trio_asyncio

    async def fetch() -> dict[str, Any]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                row = await trio_asyncio.aio_as_trio(conn.fetchrow)(
                    "SELECT * FROM device_sync_status WHERE tenant = $1 AND device_id = $2",
                    T,
                    device_id,
                )
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        assert row is not None, device_id
        return dict(row)

    return trio.run(fetch)
