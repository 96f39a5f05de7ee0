"""What the upstream and application drills (rows_upstream.py, rows_app.py) drive and watch.

The drills see the service as an operator does: the desktop's HTTP answers through the load
balancer, each process's ``/metrics``, the simulated upstreams' own records (``/_sim/calls``,
their data read directly), the ledger's rows and the cache tier's keys. These helpers are those
views, so each drill reads as its story: break one thing, observe, restore, check.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import redis
import trio
import trio_asyncio

from edge.dashboard.catalogue import CATALOGUE
from ledger.attempts import AttemptAudit
from ledger.audit import verify
from ledger.database import Database
from ops.drills.framework import DASHBOARD, DrillDesktop, Evidence, Stack
from ops.drills.state_probes import direct_database_url
from ops.sim.outbox import applied
from schemas.actor_events import LOCK_ATTEMPTED, LOCK_PROXIED

BASE = "/bff/backoffice/v1"
TENANT = "tnt-demo"
PROPERTY = "prop-demo-1"
SIM_PROPERTY = f"/tenants/{TENANT}/properties/{PROPERTY}"
SETTLE_S = 30.0  # an open circuit waits 5 s for its trial; a partial dashboard lives 5 s
USERS = {"front_desk": "fd.demo", "gm": "gm.demo", "housekeeping": "hk.demo"}


def new_key() -> str:
    return f"drill-{uuid.uuid4().hex}"


def answer_of(response: httpx.Response) -> str:
    """``200``, or ``502 UPSTREAM_UNAVAILABLE``: the status with the error code if any."""
    if response.status_code < 400:
        return str(response.status_code)
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)


@contextlib.contextmanager
def desktop(
    stack: Stack, username: str = "fd.demo", tenant: str = TENANT
) -> Iterator[DrillDesktop]:
    """A fresh signed-in desktop for one drill, closed afterwards."""
    desk = stack.desktop(username, tenant)
    try:
        yield desk
    finally:
        desk.close()


@contextlib.contextmanager
def settled(
    stack: Stack, ev: Evidence, username: str = "fd.demo", tenant: str = TENANT
) -> Iterator[DrillDesktop]:
    """A fresh desktop, once every process serves it a complete dashboard (iam's keys and the
    tenant's status cached there, no circuit an earlier drill opened still open): each drill
    starts from a healthy stack, so what it sees is its own fault's doing."""
    with desktop(stack, username, tenant) as desk:
        deadline = time.monotonic() + SETTLE_S
        for url in stack.instance_urls:
            while not _complete(stack, desk, url):
                if time.monotonic() > deadline:
                    ev.fail(f"{url} serves no complete dashboard within {SETTLE_S:.0f}s")
                time.sleep(0.2)
        ev.note(f"settled: {len(stack.instance_urls)} process(es) serve a complete dashboard")
        yield desk


def _complete(stack: Stack, desk: DrillDesktop, instance_url: str) -> bool:
    evict_views(stack, "dashboard:*")
    answer = via(desk, instance_url, f"{DASHBOARD}?propertyId={PROPERTY}")
    return answer.status_code == 200 and answer.json().get("partial") is False


def via(desk: DrillDesktop, instance_url: str, path: str) -> httpx.Response:
    """``GET path`` sent to one process directly, past the load balancer (the proof names the
    balancer's URL, which is each process's public URL)."""
    return httpx.get(instance_url + path, headers=desk.headers("GET", path), timeout=15.0)


# -- the dashboard --------------------------------------------------------------------------


def widgets_from(upstream: str, role: str) -> list[str]:
    """The widget ids ``role``'s dashboard draws from ``upstream`` (the widget catalogue)."""
    return [w.id for w in CATALOGUE if w.upstream == upstream and role in w.roles]


class Dashboard:
    """One ``GET /dashboard`` (JSON): its answer, how long it took, its widgets by id."""

    def __init__(self, desk: DrillDesktop, property_id: str = PROPERTY) -> None:
        start = time.monotonic()
        self.response = desk.get(f"{DASHBOARD}?propertyId={property_id}")
        self.seconds = time.monotonic() - start
        body: dict[str, Any] = self.response.json() if self.response.status_code == 200 else {}
        self.partial: bool | None = body.get("partial")
        self.widgets: dict[str, dict[str, Any]] = {w["id"]: w for w in body.get("widgets", [])}

    def status_of(self, ids: list[str]) -> set[str]:
        return {self.widgets[i]["status"] for i in ids if i in self.widgets}

    def others(self, ids: list[str]) -> list[str]:
        return [i for i in self.widgets if i not in ids]

    def unavailable(self) -> list[str]:
        return [i for i, w in self.widgets.items() if w["status"] != "ok"]


def cache_client(stack: Stack) -> redis.Redis:
    url = stack.env.get("BFF_REDIS_CACHE_URL") or stack.env.get(
        "BFF_REDIS_SESSION_URL", "redis://127.0.0.1:6379/0"
    )
    return redis.Redis.from_url(url, socket_timeout=5.0)


def prefix(stack: Stack) -> str:
    return stack.env.get("BFF_REDIS_PREFIX", "bff")


def evict_views(stack: Stack, pattern: str = "*", property_id: str = PROPERTY) -> int:
    """Delete the cached compositions (``cache:<name>``) of the property: the next read
    composes from the upstreams, as after a TTL. The last good boards (``last:``) stay."""
    client = cache_client(stack)
    try:
        match = f"{prefix(stack)}:{TENANT}:property:{property_id}:cache:{pattern}"
        keys = list(client.scan_iter(match, count=500))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def fresh_dashboard(stack: Stack, desk: DrillDesktop) -> Dashboard:
    evict_views(stack, "dashboard:*")
    return Dashboard(desk)


# -- the processes' metrics ---------------------------------------------------------------


class Meter:
    """A counter's sum over every process, remembered now to say how much it rose later."""

    def __init__(self, stack: Stack, name: str, **labels: str) -> None:
        self.stack, self.name, self.labels = stack, name, labels
        self.start = stack.metric(name, **labels)

    def rise(self) -> float:
        return self.stack.metric(self.name, **self.labels) - self.start

    def shown(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return f"{self.name}{{{labels}}} +{self.rise():.0f}"


# -- the simulated upstreams ------------------------------------------------------------------


def upstream_items(stack: Stack, service: str, path: str) -> list[dict[str, Any]]:
    """What the simulated ``service`` holds at ``path`` (under the demo property), read
    directly as the BFF would."""
    body: dict[str, Any] = stack.sim("GET", f"/{service}/v1{SIM_PROPERTY}{path}").json()
    items: list[dict[str, Any]] = body.get("items", [body])
    return items


def applied_calls(stack: Stack, service: str, key: str) -> list[dict[str, Any]]:
    """The mutation calls ``service`` received with ``Idempotency-Key: key`` and acted on."""
    items = stack.sim("GET", "/_sim/calls", params={"service": service}).json()["items"]
    return [c for c in items if c.get("idempotencyKey") == key and applied(c)]


def in_house_guest(stack: Stack) -> dict[str, Any]:
    """A checked-in reservation (keys are issued to those only; each has a folio)."""
    guests = upstream_items(stack, "reservation", "/in-house")
    if not guests:
        raise RuntimeError("the demo property has no in-house guest")
    return guests[0]


# -- the ledger -------------------------------------------------------------------------------


def ledger_rows(
    stack: Stack, stream: str, tenant: str = TENANT
) -> list[tuple[str, dict[str, Any]]]:
    """``(subject, payload)`` of every row of ``stream``, oldest first, read from Postgres."""

    rows = _query(
        stack,
        "SELECT subject, payload::text AS p FROM ledger"
        " WHERE tenant = $1 AND stream = $2 ORDER BY position",
        tenant,
        stream,
    )
    return [(r["subject"], json.loads(r["p"])) for r in rows]


def check_retryable(ev: Evidence, response: httpx.Response, expected: set[str], what: str) -> None:
    """``response`` is one of the ``expected`` answers and says the desktop may retry."""
    seen = answer_of(response)
    retryable = response.status_code >= 400 and bool(
        response.json().get("error", {}).get("retryable")
    )
    ev.check(seen in expected and retryable, f"{what} answered {seen}, retryable={retryable}")


def lock_outcomes(stack: Stack, reservation: str, key: str) -> list[str]:
    """The lock audit (``lock:<reservation>``) of the attempts made with ``key``: each
    attempt's outcome in order, ``missing`` for an attempt without its outcome row (F-27)."""
    attempts: dict[str, str] = {}
    for subject, payload in ledger_rows(stack, f"lock:{reservation}"):
        if subject == LOCK_ATTEMPTED and payload.get("idempotencyKey") == key:
            attempts[payload["attemptId"]] = "missing"
        elif subject == LOCK_PROXIED and payload.get("attemptId") in attempts:
            attempts[payload["attemptId"]] = payload["outcome"]
    return list(attempts.values())


def _query(stack: Stack, sql: str, *args: object) -> list[dict[str, Any]]:
    """Rows of one read-only statement on the ledger's database (past any fault proxy)."""

    async def read() -> list[dict[str, Any]]:
        async with trio_asyncio.open_loop():
            db = Database(direct_database_url(stack), max_size=1, timeout=15)
            await db.open()
            try:
                return [dict(r) for r in await db.fetch(sql, *args)]
            finally:
                await db.close()

    return trio.run(read)


def lock_audit(stack: Stack) -> AttemptAudit:
    """``./ops/ledger verify``'s lock-audit check over every attempt so far (no grace: the
    drill's own attempts were answered, so their outcomes must be there)."""

    async def read() -> AttemptAudit:
        async with trio_asyncio.open_loop():
            db = Database(direct_database_url(stack), max_size=1, timeout=15)
            await db.open()
            try:
                report = await verify(db, attempt_grace_s=0.0)
            finally:
                await db.close()
        return next(a for a in report.audits if a.check == "lock")

    return trio.run(read)


def mirrored_preferences(stack: Stack, operator: str) -> dict[str, Any] | None:
    """The BFF's Postgres mirror of the operator's preferences (None: no copy)."""
    rows = _query(
        stack,
        "SELECT layout, density, version FROM operator_preferences"
        " WHERE tenant = $1 AND operator_id = $2",
        TENANT,
        operator,
    )
    return rows[0] if rows else None
