"""Preferences and shortcuts over real HTTP (a BFF process, the simulator's tenant-service,
Postgres, Redis, DPoP desktops): write-through round trip; tenant-service failing changes
nothing anywhere (F-36) and a retry with the same key then applies it once; reads fall back to
the mirror, flagged stale (F-3); validation naming the field or chord before anyone is asked;
idempotent replay with one upstream call; other operators and tenants never see the change;
the rendered shortcut map is cached, re-rendered after a change, and made stale by
``theme.published.v1``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import msgspec
import pytest
import redis
import trio

from actors.testing import MemoryEventLog
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.metrics import Metrics
from edge.operator_preferences import MAX_ROUNDS, OperatorPreferencesService
from edge.preferences_cache import PreferencesCache
from edge.redis_tier import RedisTier
from edge.upstream.apis import TenantApi
from edge.upstream.errors import UpstreamRejected
from ledger.database import Database
from ledger.preferences import PreferencesMirror
from schemas.preferences import PreferencesUpdate
from schemas.upstream import tenant as tnt
from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import ServiceProcess, wait_until
from tests.support.sim import SimHandle

BASE = "/bff/backoffice/v1"
T, OP = "tnt-demo", "opr-fd-demo"
FAST = {"BFF_BREAKER_OPEN_S": "0.5"}  # a circuit opened by a test's outage closes soon after


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, **FAST)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


@pytest.fixture
def cache(redis_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def put(desk: Desktop, body: Any, **headers: str) -> httpx.Response:
    return desk.request("PUT", f"{BASE}/preferences", json=body, headers=headers)


def upstream(sim: SimHandle, tenant: str = T, operator: str = OP) -> dict[str, Any]:
    """tenant-service's copy, asked directly."""
    found: dict[str, Any] = sim.get(f"/tenant/v1/tenants/{tenant}/operators/{operator}/preferences")
    return found


def upstream_puts(sim: SimHandle) -> list[dict[str, Any]]:
    return [
        c
        for c in sim.calls("tenant", kind="all")
        if c["method"] == "PUT" and c["path"].endswith("/preferences")
    ]


def upstream_reads(sim: SimHandle) -> int:
    calls = sim.calls("tenant", kind="all")
    return sum(c["method"] == "GET" and c["path"].endswith("/preferences") for c in calls)


def cached(client: redis.Redis, prefix: str, tenant: str = T, operator: str = OP) -> Any:
    raw = client.get(f"{prefix}:{tenant}:operator:{operator}:preferences")
    return None if raw is None else json.loads(raw)


def sql(database_url: str, statement: str, *args: object) -> list[dict[str, Any]]:
    import asyncpg
    import trio_asyncio

    async def run() -> list[dict[str, Any]]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                rows = await trio_asyncio.aio_as_trio(conn.fetch)(statement, *args)
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        return [dict(r) for r in rows]

    return trio.run(run)


def mirrored(database_url: str, tenant: str = T, operator: str = OP) -> dict[str, Any] | None:
    rows = sql(
        database_url,
        "SELECT layout, density, columns::text AS columns, shortcuts::text AS shortcuts, version"
        " FROM operator_preferences WHERE tenant = $1 AND operator_id = $2",
        tenant,
        operator,
    )
    if not rows:
        return None
    row = rows[0]
    return {**row, "columns": json.loads(row["columns"]), "shortcuts": json.loads(row["shortcuts"])}


def fields(prefs: dict[str, Any]) -> tuple[Any, ...]:
    return prefs["layout"], prefs["density"], prefs["columns"], prefs["shortcuts"], prefs["version"]


# --- the write-through -------------------------------------------------------------------------


def test_round_trip_writes_tenant_service_then_mirror_and_cache(
    fd: Desktop, sim: SimHandle, database_url: str, cache: redis.Redis, redis_prefix: str
) -> None:
    first = ok(fd.get(f"{BASE}/preferences"))
    seeded = upstream(sim)
    assert fields(first) == fields(seeded) and first["operatorId"] == OP
    assert first["stale"] is False

    change = {"density": "compact", "shortcuts": {"Shift+Ctrl+J": "search", "F2": "help"}}
    updated = ok(put(fd, change))
    assert updated["density"] == "compact"
    assert updated["shortcuts"] == {"ctrl+shift+j": "search", "f2": "help"}  # canonical
    assert updated["layout"] == seeded["layout"] and updated["columns"] == seeded["columns"]
    assert updated["version"] == seeded["version"] + 1

    assert fields(upstream(sim)) == fields(updated)
    assert fields(ok(fd.get(f"{BASE}/preferences"))) == fields(updated)
    row = mirrored(database_url)
    assert row is not None and fields(row) == fields(updated)
    entry = cached(cache, redis_prefix)
    assert entry is not None and fields(entry) == fields(updated)
    assert 0 < cache.pttl(f"{redis_prefix}:{T}:operator:{OP}:preferences") <= 300_000
    [call] = upstream_puts(sim)
    assert call["body"]["expectedVersion"] == seeded["version"]  # compare-and-set

    activity = ledger_subjects(database_url, f"activity:{OP}")
    assert [p["action"] for s, p in activity if s.endswith("operator.activity.v1")] == [
        "preferences.update"
    ]

    shortcuts = ok(fd.get(f"{BASE}/shortcuts"))
    bound = {b["action"]: b for b in shortcuts["bindings"]}
    assert bound["search"]["chord"] == "ctrl+shift+j" and bound["search"]["source"] == "override"
    assert bound["help"]["chord"] == "f2"
    assert bound["check-in"]["chord"] == "ctrl+i" and bound["check-in"]["source"] == "default"
    assert shortcuts["preferencesVersion"] == updated["version"] and not shortcuts["ignored"]


def test_an_update_that_changes_nothing_writes_nothing_upstream(
    fd: Desktop, sim: SimHandle
) -> None:
    current = upstream(sim)
    same = ok(put(fd, {"layout": current["layout"], "density": current["density"]}))
    assert fields(same) == fields(current)
    assert upstream_puts(sim) == []


def test_tenant_service_failing_changes_nothing_anywhere(
    fd: Desktop, sim: SimHandle, database_url: str, cache: redis.Redis, redis_prefix: str
) -> None:
    before = ok(put(fd, {"layout": "split"}))  # mirror and cache hold version 2 now
    sim.fault("tenant", "error")
    try:
        failed = put(fd, {"layout": "wide", "density": "spacious"}, **{"Idempotency-Key": "k-1"})
        body = error(failed, 503, "SERVICE_UNAVAILABLE")
        assert body["retryable"] is True
        assert "nothing was changed" in body["message"]
        served = ok(fd.get(f"{BASE}/preferences"))  # from the cache: tenant-service is down
    finally:
        sim.clear_faults()
    assert fields(served) == fields(before)
    assert fields(upstream(sim)) == fields(before)
    row = mirrored(database_url)
    assert row is not None and fields(row) == fields(before)
    entry = cached(cache, redis_prefix)
    assert entry is not None and fields(entry) == fields(before)
    assert len(upstream_puts(sim)) == 1  # the first update's only

    # The key was given back: the same request, retried once tenant-service is back, applies.
    retried: list[httpx.Response] = []

    def applied() -> bool:
        retried.append(
            put(fd, {"layout": "wide", "density": "spacious"}, **{"Idempotency-Key": "k-1"})
        )
        return retried[-1].status_code == 200

    wait_until(applied, 10, "the retried update to succeed")
    after = retried[-1].json()
    assert (after["layout"], after["density"], after["version"]) == ("wide", "spacious", 3)
    assert fields(upstream(sim)) == fields(after)
    assert fields(cached(cache, redis_prefix)) == fields(after)
    assert [c["status"] for c in upstream_puts(sim)] == [200, 200]


def test_tenant_service_failing_before_any_copy_exists_leaves_none(
    fd: Desktop, sim: SimHandle, database_url: str, cache: redis.Redis, redis_prefix: str
) -> None:
    sim.fault("tenant", "error")
    try:
        error(put(fd, {"density": "compact"}), 503, "SERVICE_UNAVAILABLE")
        error(fd.get(f"{BASE}/preferences"), 502, "UPSTREAM_UNAVAILABLE")
        shortcuts = ok(fd.get(f"{BASE}/shortcuts"))  # a desk always gets a keyboard map
    finally:
        sim.clear_faults()
    assert shortcuts["degraded"] is True and shortcuts["preferencesVersion"] is None
    assert mirrored(database_url) is None
    assert cached(cache, redis_prefix) is None
    assert upstream(sim)["density"] == "comfortable"


# --- reads -------------------------------------------------------------------------------------


def test_reads_fall_back_to_the_mirror_flagged_stale_when_old(
    fd: Desktop, sim: SimHandle, database_url: str, cache: redis.Redis, redis_prefix: str
) -> None:
    written = ok(put(fd, {"density": "compact"}))
    key = f"{redis_prefix}:{T}:operator:{OP}:preferences"
    cache.delete(key)  # evicted: the mirror, confirmed just now, answers without tenant-service
    reads = upstream_reads(sim)
    fresh = ok(fd.get(f"{BASE}/preferences"))
    assert fields(fresh) == fields(written) and fresh["stale"] is False
    assert upstream_reads(sim) == reads

    cache.delete(key)
    sql(
        database_url,
        "UPDATE operator_preferences SET synced_at = now() - interval '1 hour'"
        " WHERE tenant = $1 AND operator_id = $2",
        T,
        OP,
    )
    sim.fault("tenant", "error")
    try:
        old = ok(fd.get(f"{BASE}/preferences"))
        shortcuts = ok(fd.get(f"{BASE}/shortcuts"))
    finally:
        sim.clear_faults()
    assert fields(old) == fields(written) and old["stale"] is True
    assert shortcuts["stale"] is True and shortcuts["preferencesVersion"] == written["version"]
    assert cache.get(key) is None  # a stale copy is never cached as current

    def refreshed() -> bool:  # tenant-service back: read through again, stale no more
        return ok(fd.get(f"{BASE}/preferences"))["stale"] is False

    wait_until(refreshed, 10, "a fresh read once tenant-service is back")


# --- validation --------------------------------------------------------------------------------


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"density": "cozy"}, "density"),
    ({"layout": "Not A Slug"}, "layout"),
    ({"layout": 7}, "layout"),
    ({"colour": "blue"}, "colour"),
    ({}, "body"),
    ({"columns": {"arrivals": ["guest", "guest"]}}, "columns.arrivals"),
    ({"columns": {"arrivals": ["x"] * 65}}, "columns[...]"),
    ({"shortcuts": {"ctrl+j": "launch-rockets"}}, "shortcuts.ctrl+j"),
    ({"shortcuts": {"ctrl+j": "search", "Ctrl+J": "help"}}, "shortcuts.Ctrl+J"),
    ({"shortcuts": {"ctrl+i": "search"}}, "shortcuts.ctrl+i"),
    ({"shortcuts": {"j": "search"}}, "shortcuts.j"),
    ({"shortcuts": {"ctrl+c": "search"}}, "shortcuts.ctrl+c"),
    (
        {
            "shortcuts": {f"ctrl+alt+{c}": "help" for c in "abcdefghijklmnopqrstuvwxyz0123456789"}
            | {f"alt+meta+{c}": "refresh" for c in "abcdefghijklmnopqrstuvwxyz0123456789"}
        },
        "shortcuts",
    ),
]


def test_invalid_updates_are_refused_naming_the_field(fd: Desktop, sim: SimHandle) -> None:
    """Each refused before tenant-service (or the idempotency layer) is asked anything."""
    for body, field in INVALID:
        answer = put(fd, body, **{"Idempotency-Key": f"bad-{field}"})
        message = error(answer, 400, "VALIDATION_FAILED")["message"]
        assert message.startswith(f"{field}:") or f"`{field}`" in message, (field, message)
    assert upstream_puts(sim) == []
    assert upstream_reads(sim) == 0
    # The keys were never claimed: the same keys with a valid body are fresh requests.
    ok(put(fd, {"density": "compact"}, **{"Idempotency-Key": "bad-density"}))


# --- idempotency -------------------------------------------------------------------------------


def test_a_repeated_key_replays_the_first_answer_with_one_upstream_call(
    fd: Desktop, sim: SimHandle
) -> None:
    body = {"density": "spacious", "shortcuts": {"ctrl+shift+u": "go-alerts"}}
    first = put(fd, body, **{"Idempotency-Key": "prefs-1"})
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = put(fd, body, **{"Idempotency-Key": "prefs-1"})
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    [call] = upstream_puts(sim)
    assert call["idempotencyKey"] == "prefs-1"
    other = put(fd, {"density": "compact"}, **{"Idempotency-Key": "prefs-1"})
    error(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(upstream_puts(sim)) == 1
    assert upstream(sim)["density"] == "spacious"


# --- isolation ---------------------------------------------------------------------------------


def test_other_operators_and_tenants_never_see_these_preferences(
    fd: Desktop, bff: ServiceProcess, sim: SimHandle, cache: redis.Redis, redis_prefix: str
) -> None:
    mine = ok(put(fd, {"layout": "mine-only", "shortcuts": {"ctrl+shift+j": "search"}}))
    other_tenant = Desktop(bff.url, sim.url, "fd.other", tenant="tnt-other")
    colleague = Desktop(bff.url, sim.url, "hk.demo")
    try:
        for desk, operator in ((other_tenant, "opr-fd-other"), (colleague, "opr-hk-demo")):
            theirs = ok(desk.get(f"{BASE}/preferences"))
            assert theirs["operatorId"] == operator and theirs["layout"] != "mine-only"
            rendered = ok(desk.get(f"{BASE}/shortcuts"))
            bound = {b["action"]: b["chord"] for b in rendered["bindings"]}
            assert bound["search"] == "ctrl+k" and rendered["operatorId"] == operator
        theirs = ok(put(other_tenant, {"layout": "theirs"}))
        assert theirs["operatorId"] == "opr-fd-other"
    finally:
        other_tenant.close()
        colleague.close()
    assert ok(fd.get(f"{BASE}/preferences"))["layout"] == mine["layout"]
    assert cached(cache, redis_prefix, "tnt-other", "opr-fd-other")["layout"] == "theirs"
    assert cached(cache, redis_prefix, "tnt-other", OP) is None
    assert cached(cache, redis_prefix)["layout"] == "mine-only"


# --- the shortcut map --------------------------------------------------------------------------


def test_the_map_is_cached_and_rendered_again_after_a_change(fd: Desktop) -> None:
    first = ok(fd.get(f"{BASE}/shortcuts"))
    assert ok(fd.get(f"{BASE}/shortcuts"))["renderedAt"] == first["renderedAt"]  # cached
    ok(put(fd, {"shortcuts": {"ctrl+shift+j": "search"}}))
    changed = ok(fd.get(f"{BASE}/shortcuts"))
    assert changed["preferencesVersion"] == first["preferencesVersion"] + 1
    assert {b["action"]: b["chord"] for b in changed["bindings"]}["search"] == "ctrl+shift+j"


def test_a_published_theme_makes_the_rendered_help_stale(
    start_bff: ServiceFactory, bus_sim: SimHandle
) -> None:
    bff = start_bff(SIM_URL=bus_sim.url, BFF_BUS="embedded", **FAST)
    desk = Desktop(bff.url, bus_sim.url, "fd.demo")
    try:
        first = ok(desk.get(f"{BASE}/shortcuts"))
        assert ok(desk.get(f"{BASE}/shortcuts"))["renderedAt"] == first["renderedAt"]
        theme = {"tenantId": T, "themeId": "theme-tnt-demo", "version": 2}
        bus_sim.post(
            "/_sim/events", json={"subject": "melmastoon.theme.published.v1", "data": theme}
        )

        def rendered_again() -> bool:
            return bool(ok(desk.get(f"{BASE}/shortcuts"))["renderedAt"] != first["renderedAt"])

        wait_until(rendered_again, 10, "the shortcut map to be rendered again")
    finally:
        desk.close()


# --- the write-through in process: races and failures after tenant-service accepted ------------


class FakeTenantService:
    """tenant-service's preferences with its compare-and-set; ``meddle`` changes them from
    "another device" just before each of our writes lands."""

    def __init__(self) -> None:
        self.prefs = tnt.OperatorPreferences(
            operator_id=OP,
            layout="default",
            density="comfortable",
            columns={},
            shortcuts={},
            version=1,
            updated_at=datetime.now(UTC),
        )
        self.writes: list[tuple[tnt.PreferencesUpdate, str | None]] = []
        self.meddling = 0

    async def preferences(self, tenant: str, operator_id: str) -> tnt.OperatorPreferences:
        return self.prefs

    async def put_preferences(
        self, tenant: str, operator_id: str, update: tnt.PreferencesUpdate, key: str | None
    ) -> tnt.OperatorPreferences:
        self.writes.append((update, key))
        if self.meddling:
            self.meddling -= 1
            self._set(layout=f"theirs-{self.prefs.version}")
        if update.expected_version != self.prefs.version:
            raise UpstreamRejected("tenant", "putPreferences", 409, "VERSION_CONFLICT", "stale")
        self._set(
            layout=update.layout,
            density=update.density,
            columns=update.columns,
            shortcuts=update.shortcuts,
        )
        return self.prefs

    def _set(self, **changes: Any) -> None:
        self.prefs = msgspec.structs.replace(
            self.prefs, version=self.prefs.version + 1, updated_at=datetime.now(UTC), **changes
        )


PRINCIPAL = Principal(
    tenant=T,
    operator_id=OP,
    device_id="dev-1",
    session_id="ses-1",
    role="front_desk",
    property_ids=("prop-demo-1",),
    jkt="jkt",
    app_version="1.0.0",
)


def service(
    upstream: FakeTenantService, db: Database, tier: RedisTier, log: MemoryEventLog
) -> tuple[OperatorPreferencesService, PreferencesCache]:
    cache = PreferencesCache(tier, Metrics(), ttl_s=60, shortcuts_ttl_s=60)
    api = cast(TenantApi, upstream)
    prefs = OperatorPreferencesService(
        api, PreferencesMirror(db), cache, log, Metrics(), fresh_s=60
    )
    return prefs, cache


async def test_a_concurrent_change_is_merged_not_overwritten(db: Database, tier: RedisTier) -> None:
    upstream = FakeTenantService()
    upstream.meddling = 1
    prefs, _ = service(upstream, db, tier, MemoryEventLog())
    done = await prefs.update(PRINCIPAL, PreferencesUpdate(density="compact"), "k-1")
    assert (done.layout, done.density, done.version) == ("theirs-1", "compact", 3)
    assert [w.expected_version for w, _ in upstream.writes] == [1, 2]
    assert {key for _, key in upstream.writes} == {"k-1"}

    upstream.meddling = MAX_ROUNDS
    with pytest.raises(ApiError) as caught:
        await prefs.update(PRINCIPAL, PreferencesUpdate(density="spacious"), "k-2")
    assert caught.value.code is Code.CONFLICT
    assert upstream.prefs.density == "compact"


async def test_a_mirror_outage_after_tenant_service_accepted_is_retried_once_upstream(
    db: Database, tier: RedisTier, aio_loop: object
) -> None:
    upstream = FakeTenantService()
    log = MemoryEventLog()
    working, cache = service(upstream, db, tier, log)
    await working.read(T, OP)  # mirror and cache hold version 1
    dead = Database("postgresql://postgres@127.0.0.1:1/nothing", timeout=0.5)
    await dead.open()
    try:
        broken, _ = service(upstream, dead, tier, log)
        with pytest.raises(ApiError) as caught:
            await broken.update(PRINCIPAL, PreferencesUpdate(density="compact"), "k-1")
    finally:
        await dead.close()
    assert caught.value.code is Code.SERVICE_UNAVAILABLE and caught.value.code.retryable
    assert upstream.prefs.version == 2  # tenant-service has it; the BFF's copies are behind:
    assert await cache.get(T, OP) is None  # the cached copy was dropped, never left as current
    mirrored_row = await PreferencesMirror(db).get(T, OP)
    assert mirrored_row is not None and mirrored_row.version == 1
    assert log.events == []

    retried = await working.update(PRINCIPAL, PreferencesUpdate(density="compact"), "k-1")
    assert (retried.density, retried.version) == ("compact", 2)
    assert len(upstream.writes) == 1  # the retry found the change already made
    cached_now = await cache.get(T, OP)
    assert cached_now is not None and cached_now.version == 2
    mirrored_row = await PreferencesMirror(db).get(T, OP)
    assert mirrored_row is not None and mirrored_row.version == 2
    [activity] = log.events
    assert activity.stream == f"activity:{OP}"
