"""Mutation benchmark (issue #13): folio charges through the idempotency layer and their audit
rows vs the same upstream calls without them, in one run; a replayed key; the peak of 3,000
mutations/min on one instance; sync handshake and lock action p95 over the simulator's
production-like latencies.

``python -m ops.bench.mutations [--requests 400] [--concurrency 1,8] [--peak-rate 50]
[--peak-seconds 20] [--devices 32] [--replays 200] [--handshakes 100] [--lock-actions 60]
[--workers 1]``

Two throwaway stacks (``ops/bench/stack.py``), one after the other:

* **simulator latency off** (the BFF's own cost): ``POST /folios/{id}/charges`` — auth chain,
  body, scope, the key's claim (Postgres), the attempt row (ledger, through the DeviceActor),
  the folio read and the charge at billing with the key, the outcome and activity rows, the
  views voided through the PropertyActor, the answer stored — against its baseline
  ``POST /_test/bench/folios/{id}/charges`` (``edge/routes/testing.py``): the same route minus
  the idempotency layer and the audit rows (same auth, body, scope, upstream calls, view
  invalidation). The two alternate in rounds, so machine load drifts over both alike. Then the
  same keys sent again (replays: the BFF answers alone; the simulator's call log proves no
  upstream call), then an open-loop peak at ``--peak-rate`` charges/s from ``--devices``
  desktops (3,000/min = 50/s);
* **production-like simulator latencies** (``SIM_LATENCY=1``): ``POST /sync/handshake`` and
  the lock actions (issue, and revoke with a step-up attestation fetched before the clock
  starts), each request paired with what the simulator itself took for it (its call log), so
  the BFF's share shows.

Every request is a real desktop call: a fresh DPoP proof, a signed-in device, a new
``Idempotency-Key`` per mutation.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import trio

from ops.bench.stack import BenchStack, bench_stack, percentiles
from ops.sim.desktop import DemoDevice
from ops.sim.outbox import (
    API,
    Endpoint,
    Kind,
    OutboxClient,
    Planner,
    QueuedMutation,
    read_demo,
)

PROPERTY = "prop-demo-1"
CHARGES = "/bff/backoffice/v1/folios/<folioId>/charges"
BASELINE = "/bff/backoffice/v1/_test/bench/folios/<folioId>/charges"
BASELINE_PREFIX = f"{API}/_test/bench"
SPEC_MS = {"sync handshake": 300.0, "lock issue-key": 800.0, "lock revoke-key": 800.0}


@dataclass
class Series:
    """One measured series: client-side latencies (s), errors by answer, wall time."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    upstream_ms: list[float] = field(default_factory=list)  # the simulator's own time

    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p95(self) -> float:
        return percentiles(self.latencies)[1]

    def row(self) -> str:
        p50, p95, p99 = percentiles(self.latencies)
        errors = sum(self.errors.values())
        rate = f"{self.rate():8.1f}" if self.seconds else " " * 8
        return (
            f"| {self.name} | {len(self.latencies)} | {p50:.2f} | {p95:.2f} | {p99:.2f} |"
            f" {rate.strip()} | {errors} |"
        )


HEAD = "| series | n | p50 ms | p95 ms | p99 ms | req/s | errors |\n|---|---|---|---|---|---|---|"


# --- desktops and requests ---------------------------------------------------------------------


def sign_in(stack: BenchStack, count: int) -> list[DemoDevice]:
    """``count`` enrolled, signed-in desktops (a few threads: it is setup)."""

    def one(_: int) -> DemoDevice:
        device = DemoDevice(stack.sim_url, "tnt-demo", "Bench desktop")
        device.enroll()
        device.sign_in("fd.demo")
        return device

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


async def timed(client: OutboxClient, mutation: QueuedMutation, series: Series) -> float | None:
    """One request (no retry); its latency in seconds when it succeeded."""
    started = time.perf_counter()
    try:
        answer = await client.post(mutation)
    except httpx.TransportError as exc:
        series.errors[type(exc).__name__] += 1
        return None
    took = time.perf_counter() - started
    if answer.status_code != 200:
        series.errors[f"{answer.status_code} {answer.text[:80]}"] += 1
        return None
    series.latencies.append(took)
    return took


def baseline_of(mutation: QueuedMutation) -> QueuedMutation:
    """The same charge, to the baseline route."""
    path = mutation.path.replace(API, BASELINE_PREFIX, 1)
    return QueuedMutation(
        mutation.index, mutation.kind, mutation.chain, path, mutation.body, mutation.key
    )


async def closed_loop(
    clients: list[OutboxClient],
    make: Callable[[], QueuedMutation],
    count: int,
    series: Series,
    sent: list[tuple[OutboxClient, QueuedMutation]] | None = None,
) -> None:
    """``count`` requests from ``len(clients)`` callers, each sending its next as soon as the
    previous one is answered."""
    left = count

    async def caller(client: OutboxClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            mutation = make()
            if await timed(client, mutation, series) is not None and sent is not None:
                sent.append((client, mutation))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(caller, client)
    series.seconds += trio.current_time() - started


@dataclass
class OpenLoop:
    series: Series
    offered: float
    in_flight_max: int = 0


async def open_loop(
    clients: list[OutboxClient], make: Callable[[], QueuedMutation], rate: float, seconds: float
) -> OpenLoop:
    """Requests started at a fixed rate whatever the answers do (the desktops do not wait for
    each other): queueing shows as growing latency and a rate below the offered one."""
    run = OpenLoop(Series(f"peak, {rate:g}/s offered ({rate * 60:,.0f}/min)"), rate)
    in_flight = 0

    async def one(client: OutboxClient, mutation: QueuedMutation) -> None:
        nonlocal in_flight
        in_flight += 1
        run.in_flight_max = max(run.in_flight_max, in_flight)
        try:
            await timed(client, mutation, run.series)
        finally:
            in_flight -= 1

    total = int(rate * seconds)
    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(total):
            await trio.sleep_until(started + i / rate)
            nursery.start_soon(one, clients[i % len(clients)], make())
    run.series.seconds = trio.current_time() - started
    return run


# --- the BFF's own figures -------------------------------------------------------------------


def scrape(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, keyed by its name and labels."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def server_mean_ms(
    before: dict[str, float], after: dict[str, float], metric: str, label: str
) -> str:
    """Mean (ms) of a histogram's observations between two scrapes, for the series ``label``."""

    def delta(suffix: str) -> float:
        return sum(
            after[k] - before.get(k, 0.0)
            for k in after
            if k.startswith(f"{metric}_{suffix}") and label in k
        )

    count = delta("count")
    return f"{delta('sum') / count * 1000:.2f}" if count else "-"


def server_p95(before: dict[str, float], after: dict[str, float], metric: str, label: str) -> str:
    """The bucket bound (ms) under which 95 % of the observations between two scrapes fall."""
    buckets: dict[float, float] = {}
    for k, v in after.items():
        if k.startswith(f"{metric}_bucket") and label in k:
            le = k.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + v - before.get(k, 0.0)
    ordered = sorted(buckets.items())
    if not ordered or not ordered[-1][1]:
        return "-"
    edge = next(le for le, n in ordered if n >= 0.95 * ordered[-1][1])
    return f"≤ {edge * 1000:g}"


async def metrics(http: httpx.AsyncClient, stack: BenchStack) -> dict[str, float]:
    return scrape((await http.get(f"{stack.bff_url}/metrics", timeout=30)).text)


async def sim_calls(http: httpx.AsyncClient, stack: BenchStack, service: str) -> list[Any]:
    answer = await http.get(
        f"{stack.sim_url}/_sim/calls", params={"service": service, "kind": "all"}, timeout=30
    )
    items: list[Any] = msgspec.json.decode(answer.content)["items"]
    return items


# --- phase 1: the layer's cost (simulator latency off) -----------------------------------------


async def layer_vs_baseline(stack: BenchStack, args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    devices = await trio.to_thread.run_sync(sign_in, stack, args.devices)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits) as http:
        data = await read_demo(http, stack.sim_url, "tnt-demo", PROPERTY)
        planner = Planner(data, random.Random(args.seed))
        endpoint = Endpoint(stack.bff_url)
        clients = [OutboxClient(d, endpoint, http) for d in devices]

        def charge() -> QueuedMutation:
            return planner.next("charge")

        warm = Series("warm-up")
        await closed_loop(clients[:8], charge, 40, warm)
        await closed_loop(clients[:8], lambda: baseline_of(charge()), 40, warm)
        done: list[tuple[OutboxClient, QueuedMutation]] = []
        rows = []
        server: list[str] = []
        for concurrency in args.concurrency:
            layer = Series(f"charge through the layer, c={concurrency}")
            base = Series(f"baseline (no layer, no audit rows), c={concurrency}")
            before = await metrics(http, stack)
            rounds = 4
            for _ in range(rounds):
                part = args.requests // rounds
                await closed_loop(clients[:concurrency], charge, part, layer, done)
                await closed_loop(clients[:concurrency], lambda: baseline_of(charge()), part, base)
            after = await metrics(http, stack)
            rows += [layer.row(), base.row()]
            server.append(_server_line(concurrency, before, after))
            out.append(
                f"c={concurrency}: p95 added by the layer and its rows"
                f" {layer.p95() - base.p95():+.2f} ms (p50"
                f" {percentiles(layer.latencies)[0] - percentiles(base.latencies)[0]:+.2f} ms);"
                f" throughput ratio {layer.rate() / base.rate():.2f}"
            )
        replays = await replay(http, stack, done[: args.replays])
        auth = await auth_only(http, stack, devices[0], len(replays.latencies))
        peak = await open_loop(clients, charge, args.peak_rate, args.peak_seconds)
    print("\n## simulator latency off\n")
    print(HEAD)
    for row in [*rows, replays.row(), auth.row(), peak.series.row()]:
        print(row)
    print("\nserver side (the BFF's histograms between scrapes; p95 = bucket bound):")
    for line in server:
        print(f"  {line}")
    achieved = peak.series.rate()
    print(
        f"  peak: offered {peak.offered:g}/s, answered {achieved:.1f}/s, at most"
        f" {peak.in_flight_max} in flight, errors {dict(peak.series.errors)}"
    )
    return out


def _server_line(concurrency: int, before: dict[str, float], after: dict[str, float]) -> str:
    http_metric, store = (
        "bff_http_request_duration_seconds",
        "bff_idempotency_store_duration_seconds",
    )
    layer = f'route="{CHARGES}"'
    base = f'route="{BASELINE}"'
    return (
        f"c={concurrency}: route mean {server_mean_ms(before, after, http_metric, layer)} ms"
        f" (p95 {server_p95(before, after, http_metric, layer)}) vs baseline"
        f" {server_mean_ms(before, after, http_metric, base)} ms"
        f" (p95 {server_p95(before, after, http_metric, base)}); key claim"
        f" {server_mean_ms(before, after, store, 'claim')} ms, store"
        f" {server_mean_ms(before, after, store, 'complete')} ms; ledger commit"
        f" {server_mean_ms(before, after, 'bff_ledger_commit_duration_seconds', '')} ms"
        f" (p95 {server_p95(before, after, 'bff_ledger_commit_duration_seconds', '')})"
    )


async def replay(
    http: httpx.AsyncClient, stack: BenchStack, done: list[tuple[OutboxClient, QueuedMutation]]
) -> Series:
    """Keys sent again by their desktops, one at a time: each answer must be the stored one,
    and billing must see no call while they are answered."""
    series = Series("replayed key (same request again)")
    before = len(await sim_calls(http, stack, "billing"))
    started = trio.current_time()
    for client, mutation in done:
        answer = await _replayed(client, mutation)
        if answer is None:
            series.errors["not a replay"] += 1
        else:
            series.latencies.append(answer)
    series.seconds = trio.current_time() - started
    calls = len(await sim_calls(http, stack, "billing")) - before
    if calls:
        series.errors[f"{calls} billing calls"] += calls
    print(f"replays: {len(done)} keys sent again, billing calls meanwhile: {calls}")
    return series


async def auth_only(
    http: httpx.AsyncClient, stack: BenchStack, device: DemoDevice, count: int
) -> Series:
    """What any authenticated request costs (the floor under a replay): ``GET /_test/whoami``,
    the auth chain and nothing else, one at a time."""
    series = Series("auth only: GET /_test/whoami")
    url = f"{stack.bff_url}{API}/_test/whoami"
    started = trio.current_time()
    for _ in range(count):
        headers = device.auth_headers("GET", url)
        begun = time.perf_counter()
        answer = await http.get(url, headers=headers, timeout=10)
        if answer.status_code == 200:
            series.latencies.append(time.perf_counter() - begun)
        else:
            series.errors[str(answer.status_code)] += 1
    series.seconds = trio.current_time() - started
    return series


async def _replayed(client: OutboxClient, mutation: QueuedMutation) -> float | None:
    started = time.perf_counter()
    answer = await client.post(mutation)
    took = time.perf_counter() - started
    ok = answer.status_code == 200 and answer.headers.get("Idempotent-Replayed") == "true"
    return took if ok else None


# --- phase 2: over production-like upstream latencies ------------------------------------------


async def over_latency(stack: BenchStack, args: argparse.Namespace) -> list[str]:
    devices = await trio.to_thread.run_sync(sign_in, stack, 2)
    async with httpx.AsyncClient() as http:
        data = await read_demo(http, stack.sim_url, "tnt-demo", PROPERTY)
        planner = Planner(data, random.Random(args.seed))
        client = OutboxClient(devices[0], Endpoint(stack.bff_url), http)
        handshake = await handshakes(client, http, stack, args.handshakes)
        issue, revoke = await lock_actions(client, http, stack, planner, args.lock_actions)
    print("\n## simulator latency on (production-like)\n")
    print("| series | n | p50 ms | p95 ms | p99 ms | upstream p95 ms | BFF share p95 ms |")
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for series in (handshake, issue, revoke):
        p50, p95, p99 = percentiles(series.latencies)
        upstream = percentiles([s / 1000 for s in series.upstream_ms])[1]
        share = _share_p95(series)
        print(
            f"| {series.name} | {len(series.latencies)} | {p50:.1f} | {p95:.1f} | {p99:.1f} |"
            f" {upstream:.1f} | {share:.1f} |"
        )
        spec = SPEC_MS[series.name]
        verdicts.append(
            f"{series.name}: p95 {p95:.1f} ms against the spec's {spec:g} ms:"
            f" {'met' if p95 < spec else 'MISSED'} (errors {sum(series.errors.values())})"
        )
    return verdicts


def _share_p95(series: Series) -> float:
    """p95 of (client latency minus the simulator's own time), request by request."""
    pairs = zip(series.latencies, series.upstream_ms, strict=True)
    return percentiles([max(0.0, lat - up / 1000) for lat, up in pairs])[1]


async def handshakes(
    client: OutboxClient, http: httpx.AsyncClient, stack: BenchStack, count: int
) -> Series:
    """Sequential handshakes; each paired with the slower of its two sync-service calls (the
    handshake and the cursor read run at once)."""
    series = Series("sync handshake")
    device = client.device
    url = f"{stack.bff_url}{API}/sync/handshake"
    body = msgspec.json.encode({"deviceId": device.device_id})
    for _ in range(count):
        before = len(await sim_calls(http, stack, "sync"))
        headers = device.auth_headers("POST", url) | {"Content-Type": "application/json"}
        started = time.perf_counter()
        answer = await http.post(url, content=body, headers=headers, timeout=10)
        took = time.perf_counter() - started
        if answer.status_code != 200:
            series.errors[f"{answer.status_code} {answer.text[:80]}"] += 1
            continue
        calls = (await sim_calls(http, stack, "sync"))[before:]
        series.latencies.append(took)
        series.upstream_ms.append(max((c["durationMs"] for c in calls), default=0.0))
    return series


async def lock_actions(
    client: OutboxClient,
    http: httpx.AsyncClient,
    stack: BenchStack,
    planner: Planner,
    count: int,
) -> tuple[Series, Series]:
    """Issue a key, then revoke the reservation's keys (the attestation is fetched first: the
    operator's step-up is not the lock action), ``count`` times each, one at a time."""
    issue, revoke = Series("lock issue-key"), Series("lock revoke-key")
    for _ in range(count):
        steps: tuple[tuple[Kind, Series], ...] = (("issue_key", issue), ("revoke_key", revoke))
        for kind, series in steps:
            mutation = planner.next(kind)
            if kind == "revoke_key":
                mutation.attestation = await client.attest("lock.revoke")
            took = await timed(client, mutation, series)
            if took is not None:
                lock = [
                    c
                    for c in await sim_calls(http, stack, "lock")
                    if c["idempotencyKey"] == mutation.key
                ]
                series.upstream_ms.append(sum(c["durationMs"] for c in lock))
    return issue, revoke


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per route and concurrency")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8])
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--peak-rate", type=float, default=50.0, help="charges per second")
    parser.add_argument("--peak-seconds", type=float, default=20.0)
    parser.add_argument("--handshakes", type=int, default=100)
    parser.add_argument("--lock-actions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="BFF worker processes (BFF_WORKERS; an instance runs one per vCPU). With more than"
        " one, the server-side figures are those of the worker that answered /metrics",
    )
    args = parser.parse_args()
    if max(args.concurrency) > args.devices:
        parser.error("--devices must be at least the highest --concurrency")
    bff = {
        "BFF_RATE_LIMIT_PER_MINUTE": "1000000",
        "BFF_ENABLE_TEST_ROUTES": "1",
        "BFF_WORKERS": str(args.workers),
    }
    with bench_stack(sim_env={"SIM_LATENCY": "0"}, **bff) as stack:
        verdicts = _run(layer_vs_baseline, stack, args)
    with bench_stack(sim_env={"SIM_LATENCY": "1"}, **bff) as stack:
        verdicts += _run(over_latency, stack, args)
    print("\n" + "\n".join(verdicts))


def _run(
    phase: Callable[[BenchStack, argparse.Namespace], Awaitable[list[str]]],
    stack: BenchStack,
    args: argparse.Namespace,
) -> list[str]:
    return trio.run(phase, stack, args)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


if __name__ == "__main__":
    main()
