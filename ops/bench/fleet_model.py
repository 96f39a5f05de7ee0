"""What the fleet benchmark offers and what it is held to: the capacity model's rates
(DEPLOYMENT_TOPOLOGY §13), the spec's p95 targets (SERVICE_OVERVIEW §9), and the schedule of one
run (which device does what, when), plus the messages the driver and its load processes trade.

Rates are per tenant of 50 devices, as §13 states them, and scale with the devices a tenant
has (a tenant of 3 devices reads its dashboard 3/50 as often). Where §13 names no rate
(workbench boards, alerts, sync handshakes) the rate here is an assumption and says so.

Every activity happens at least once in a run, whatever the rates say (``at_least_one``): a
short smoke run still exercises each route; at the all-tenant peak the rounding is noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

# --- routes and their targets ------------------------------------------------------------------

HEARTBEAT = "heartbeat"
DASHBOARD = "dashboard"
FIRST_BYTE = "dashboard first byte"
WORKBENCH = "workbench"
MUTATION = "mutation"
REPLAY = "mutation replay"
LOCK = "lock issue-key"
HANDSHAKE = "sync handshake"
ACK = "alert acknowledge"
DECIDE = "ai decide"
SSE_OPEN = "sse open"

ROUTES = (
    HEARTBEAT,
    DASHBOARD,
    FIRST_BYTE,
    WORKBENCH,
    MUTATION,
    REPLAY,
    LOCK,
    HANDSHAKE,
    ACK,
    DECIDE,
)
"""The request rows of the report, in order (``sse open`` is reported with the streams)."""

SPEC_P95_MS: dict[str, float] = {
    DASHBOARD: 600.0,
    FIRST_BYTE: 200.0,
    WORKBENCH: 400.0,
    LOCK: 800.0,
    HEARTBEAT: 80.0,
    HANDSHAKE: 300.0,
}
"""SERVICE_OVERVIEW §9: the p95 each route must stay under (the others have no target)."""

ROUTE_UPSTREAMS: dict[str, tuple[str, ...]] = {
    DASHBOARD: (
        "reservation",
        "housekeeping",
        "maintenance",
        "billing",
        "inventory",
        "pricing",
        "analytics",
        "notification",
        "ai",
        "property",
    ),
    FIRST_BYTE: (),
    WORKBENCH: ("reservation", "housekeeping", "maintenance", "property"),
    MUTATION: ("reservation", "billing", "housekeeping", "maintenance"),
    LOCK: ("lock",),
    HANDSHAKE: ("sync",),
    ACK: ("notification",),
    DECIDE: ("ai",),
}
"""The simulated upstreams a route waits for: its baseline is the slowest one's own p95 in the
simulator's call log over the same window (a replay and a heartbeat call none)."""

# --- the capacity model ------------------------------------------------------------------------

MODEL_DEVICES = 50  # §13: devices of a tenant at its peak


@dataclass(frozen=True)
class Rate:
    activity: str
    per_tenant_per_min: float  # at 50 devices
    source: str  # "§13" or why it is assumed


RATES: tuple[Rate, ...] = (
    Rate(HEARTBEAT, 50.0, "§13: every device once a minute"),
    Rate(DASHBOARD, 30.0, "§13 dashboard reads"),
    Rate(WORKBENCH, 30.0, "assumed: as many board reads as dashboard reads"),
    Rate(MUTATION, 60.0, "§13 mutations, sent as offline queues of 5"),
    Rate(LOCK, 10.0 / 60, "§13 lock actions (issue-key)"),
    Rate(DECIDE, 5.0 / 60, "§13 AI decisions: a suggestion raised, then decided"),
    Rate(ACK, 12.0 / 60, "assumed: an alert every 5 min, acknowledged by one desk"),
    Rate(HANDSHAKE, 50.0 / 60, "assumed: every device once an hour"),
)
RATE_OF = {r.activity: r for r in RATES}
QUEUE_LENGTH = 5  # mutations in one offline queue, sent in order by one device
REPLAY_SHARE = 0.1  # queues sent a second time, unchanged (a desktop that lost track)
EVENTS_BEFORE = 0.8  # alerts and suggestions are raised in the first 80 % of the window

# What each device is signed in as, in turn: half front desk, a fifth gm, a fifth housekeeping,
# a tenth maintenance (the gm's dashboard is the largest). Device 0 of a tenant (front desk)
# acknowledges its alerts and decides its suggestions.
ROLE_CYCLE = ("fd", "fd", "gm", "hk", "fd", "mt", "fd", "hk", "gm", "fd")
WORKBENCH_BOARDS = (
    "/today",
    "/arrivals",
    "/departures",
    "/in-house",
    "/housekeeping/board",
    "/maintenance/board",
)


def username_of(device: int) -> str:
    return f"{ROLE_CYCLE[device % len(ROLE_CYCLE)]}.fleet"


def tenant_id(n: int) -> str:
    """The simulator's generated tenants (``SIM_FLEET_TENANTS``), numbered from 1."""
    return f"tnt-fleet-{n:03d}"


def property_id(n: int) -> str:
    return f"prop-fleet-{n:03d}"


# --- messages between the driver and the load processes ------------------------------------


class TenantSlice(msgspec.Struct, array_like=True):
    number: int  # 1-based: tnt-fleet-NNN
    devices: int


class Task(msgspec.Struct, array_like=True):
    at: float  # seconds after the window opens
    kind: str  # HEARTBEAT, DASHBOARD, WORKBENCH, MUTATION (a queue), LOCK, HANDSHAKE
    tenant: int
    device: int
    replay: bool = False  # MUTATION: send the queue a second time afterwards


class LoadPlan(msgspec.Struct, kw_only=True):
    bff_url: str
    sim_url: str
    tenants: list[TenantSlice]
    tasks: list[Task]
    seed: int


class Sample(msgspec.Struct, array_like=True):
    at: float  # seconds after the window opened, when the request was sent
    route: str
    status: int  # 0: no answer (connection lost, timeout)
    latency: float  # seconds
    code: str = ""  # the error envelope's code, for a non-2xx


class LoadResult(msgspec.Struct, kw_only=True):
    index: int
    samples: list[Sample]
    arrivals: dict[str, list[float]]  # "alert:<id>" / "ai:<id>" → time.time() per stream
    streams_by_tenant: dict[int, int]  # streams still open at the end, per tenant
    streams_ended: dict[str, int]  # why streams ended early (should be empty)
    keepalives: int
    cpu_s: float  # this process, over the window
    lag_ms: tuple[float, float]  # p95 and max of how late tasks started (the loader's own lag)


# --- the schedule --------------------------------------------------------------------------


def at_least_one(rate_per_s: float, seconds: float) -> int:
    return max(1, round(rate_per_s * seconds))


def schedule(
    tenants: int, devices: int, seconds: float, multiplier: float, rng: random.Random
) -> list[Task]:
    """Every request task of the window, sorted by time. Heartbeats are periodic per device
    (a random phase; spread over the window when it is shorter than the period); the other
    activities arrive at uniform random times on random tenants and devices."""
    tasks: list[Task] = []
    period = 60.0 / multiplier
    for tenant in range(1, tenants + 1):
        for device in range(devices):
            at = rng.uniform(0, min(period, seconds))
            while at < seconds:
                tasks.append(Task(at, HEARTBEAT, tenant, device))
                at += period
    scale = devices / MODEL_DEVICES * tenants * multiplier / 60.0  # per-tenant/min → fleet/s
    for kind in (DASHBOARD, WORKBENCH, MUTATION, LOCK, HANDSHAKE):
        rate = RATE_OF[kind].per_tenant_per_min * scale
        if kind == MUTATION:
            rate /= QUEUE_LENGTH
        for _ in range(at_least_one(rate, seconds)):
            at, tenant = rng.uniform(0, seconds), rng.randint(1, tenants)
            device = rng.randrange(devices)
            replay = kind == MUTATION and rng.random() < REPLAY_SHARE
            tasks.append(Task(at, kind, tenant, device, replay))
    if not any(t.replay for t in tasks):
        next(t for t in tasks if t.kind == MUTATION).replay = True
    return sorted(tasks, key=lambda t: t.at)


class Raise(msgspec.Struct, array_like=True):
    at: float
    kind: str  # "alert" | "aiSuggestion" (the simulator's /_sim/raise kinds)
    tenant: int


def raises(
    tenants: int, devices: int, seconds: float, multiplier: float, rng: random.Random
) -> list[Raise]:
    """The alerts and AI suggestions the driver raises at the simulator during the window."""
    scale = devices / MODEL_DEVICES * tenants * multiplier / 60.0
    found: list[Raise] = []
    for activity, kind in ((ACK, "alert"), (DECIDE, "aiSuggestion")):
        rate = RATE_OF[activity].per_tenant_per_min * scale
        for _ in range(at_least_one(rate, seconds)):
            at = rng.uniform(0, seconds * EVENTS_BEFORE)
            found.append(Raise(at, kind, rng.randint(1, tenants)))
    return sorted(found, key=lambda r: r.at)
