"""Dashboard and workbench latency against the simulator's default (production-like) latencies.

``python -m ops.bench.dashboard [--cold 40] [--warm 300] [--role gm]``

Starts a throwaway BFF + simulator (``ops/bench/stack.py``; simulator latency on, i.e. tens of
ms per upstream with a lognormal tail), signs a desktop in (DPoP), and measures over real HTTP:

* **cold** dashboards (``Accept: application/x-ndjson``): the cache entry is voided before each
  request (as a domain event does), so every one composes from ~14 upstream calls. Per request
  the *overhead ratio* = dashboard latency / slowest upstream call of that composition, with the
  slowest call measured two ways: as the BFF saw it (request sent → answer decoded; the
  ``bff_dashboard_slowest_call_duration_seconds`` sample of that composition) and, stricter, as
  the simulator timed its own handling (``durationMs`` in ``/_sim/calls``: no network, no
  queueing in the simulator's HTTP server). 1.0 would be "as fast as the slowest upstream
  allows". The composer-only ratio (composition time / slowest call) is shown too.
* **warm** dashboards (served from the Redis cache), stream and JSON.
* **first byte** of every stream (the ``begin`` line).
* **workbench** warm reads (``/arrivals``, ``/housekeeping/board``).
* **baseline**, same run: an authenticated no-op route (``/_test/whoami``) — the cost of
  HTTP + DPoP auth alone; warm figures are also shown as a ratio to it.

Prints p50/p95/p99 and throughput per series, and the ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

from edge.dashboard.catalogue import plan_for
from ops.bench.stack import BenchStack, bench_stack, percentiles
from ops.sim.desktop import DemoDevice

PROPERTY = "prop-demo-1"
DASHBOARD = "/bff/backoffice/v1/dashboard"
WHOAMI = "/bff/backoffice/v1/_test/whoami"
APP_VERSION = "1.4.0"
USERS = {"gm": "gm.demo", "front_desk": "fd.demo", "housekeeping": "hk.demo"}


class Client:
    def __init__(self, stack: BenchStack, username: str) -> None:
        self.stack = stack
        self.device = DemoDevice(stack.sim_url, "tnt-demo", "Bench desktop")
        self.device.enroll()
        self.device.sign_in(username)
        self.http = httpx.Client(base_url=stack.bff_url, timeout=30)
        self.sim = httpx.Client(base_url=stack.sim_url, timeout=30)

    def headers(self, path: str, **extra: str) -> dict[str, str]:
        headers = self.device.auth_headers("GET", self.stack.bff_url + path)
        headers["X-App-Version"] = APP_VERSION
        headers.update(extra)
        return headers

    def stream(self, path: str = DASHBOARD) -> tuple[float, float, list[bytes]]:
        """(first byte s, total s, lines) of one NDJSON dashboard."""
        headers = self.headers(path, Accept="application/x-ndjson")
        started = time.perf_counter()
        first = 0.0
        lines: list[bytes] = []
        with self.http.stream(
            "GET", path, params={"propertyId": PROPERTY}, headers=headers
        ) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_raw():
                if not first:
                    first = time.perf_counter() - started
                lines.extend(line for line in chunk.split(b"\n") if line)
        return first, time.perf_counter() - started, lines

    def get(self, path: str, **params: str) -> float:
        headers = self.headers(path, Accept="application/json")
        started = time.perf_counter()
        answer = self.http.get(path, params={"propertyId": PROPERTY, **params}, headers=headers)
        answer.raise_for_status()
        return time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        """The BFF's dashboard histograms' sums (sequential requests: deltas are per request)."""
        text = self.http.get("/metrics").text
        wanted = {
            'bff_dashboard_composition_duration_seconds_sum{kind="dashboard"}': "composition",
            "bff_dashboard_slowest_call_duration_seconds_sum": "slowest",
        }
        found = {}
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name in wanted:
                found[wanted[name]] = float(value)
        return found

    def slowest_upstream(self, services: set[str]) -> float:
        calls = self.sim.get("/_sim/calls", params={"kind": "all"}).json()["items"]
        durations = [c["durationMs"] for c in calls if c["service"] in services]
        return max(durations) / 1000 if durations else float("nan")


def series(name: str, latencies: list[float], elapsed: float | None = None) -> None:
    p50, p95, p99 = percentiles(latencies)
    rate = f"{len(latencies) / elapsed:>8.1f}" if elapsed else f"{'':>8}"
    print(f"{name:<34} {len(latencies):>5} {p50:>9.2f} {p95:>9.2f} {p99:>9.2f} {rate}")


def timed(call: Callable[[], Any], count: int) -> tuple[list[Any], float]:
    results = []
    started = time.perf_counter()
    for _ in range(count):
        results.append(call())
    return results, time.perf_counter() - started


def run(stack: BenchStack, role: str, cold_n: int, warm_n: int) -> None:
    client = Client(stack, USERS[role])
    gen_key = f"{stack.redis_prefix}:tnt-demo:property:{PROPERTY}:cache-gen"
    store = redis.Redis.from_url(stack.redis_url)
    services: set[str] = {w.upstream for w in plan_for(role).widgets}  # type: ignore[arg-type]
    for _ in range(5):  # warm connections, JWKS and tenant caches, the actor
        client.get(WHOAMI)
        client.stream()

    def cold() -> tuple[float, float, float, float, float]:
        store.hincrby(gen_key, f"dashboard:{role}", 1)
        client.sim.delete("/_sim/calls")
        before = client.metrics()
        first, total, lines = client.stream()
        assert lines[-1] == b'{"type":"end","partial":false}', lines[-1]
        after = client.metrics()
        composition = after["composition"] - before["composition"]
        seen = after["slowest"] - before["slowest"]
        return first, total, client.slowest_upstream(services), seen, composition

    cold_runs, cold_s = timed(cold, cold_n)
    client.stream()  # cache it
    warm_runs, warm_s = timed(client.stream, warm_n)
    json_runs, json_s = timed(lambda: client.get(DASHBOARD), warm_n)
    base_runs, base_s = timed(lambda: client.get(WHOAMI), warm_n)
    client.get("/bff/backoffice/v1/arrivals")
    client.get("/bff/backoffice/v1/housekeeping/board")
    arr_runs, arr_s = timed(lambda: client.get("/bff/backoffice/v1/arrivals"), warm_n)
    hk_runs, hk_s = timed(lambda: client.get("/bff/backoffice/v1/housekeeping/board"), warm_n)
    store.close()

    strict = [total / sim_side for _, total, sim_side, _, _ in cold_runs]
    ratios = [total / seen for _, total, _, seen, _ in cold_runs]
    composer = [composition / seen for _, _, _, seen, composition in cold_runs]
    print(f"role {role}: {len(plan_for(role).widgets)} widgets, {len(services)} upstreams")  # type: ignore[arg-type]
    print(f"{'series (ms)':<34} {'n':>5} {'p50':>9} {'p95':>9} {'p99':>9} {'req/s':>8}")
    series("dashboard cold (stream, total)", [r[1] for r in cold_runs], cold_s)
    series("  its slowest call, seen by the BFF", [r[3] for r in cold_runs])
    series("  its slowest call, simulator-side", [r[2] for r in cold_runs])
    series("  its composition (in the BFF)", [r[4] for r in cold_runs])
    series("dashboard warm (stream, total)", [t for _, t, _ in warm_runs], warm_s)
    series("dashboard warm (json)", json_runs, json_s)
    firsts = [r[0] for r in cold_runs] + [f for f, _, _ in warm_runs]
    series("first byte (all streams)", firsts)
    series("workbench warm /arrivals", arr_runs, arr_s)
    series("workbench warm /housekeeping/board", hk_runs, hk_s)
    series("baseline: auth-only /_test/whoami", base_runs, base_s)
    for name, values in (
        ("dashboard / slowest call (BFF-side)", ratios),
        ("dashboard / slowest call (sim-side)", strict),
        ("composition / slowest call", composer),
    ):
        r50, r95, _ = (x / 1000 for x in percentiles(values))
        print(f"cold overhead ratio, {name:<36} p50 {r50:.3f}  p95 {r95:.3f}")
    b50, b95, _ = percentiles(base_runs)
    w50, w95, _ = percentiles([t for _, t, _ in warm_runs])
    print(f"warm stream / baseline: p50 {w50 / b50:.2f}  p95 {w95 / b95:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=40)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--role", default="gm", choices=sorted(USERS))
    args = parser.parse_args()
    with bench_stack(BFF_ENABLE_TEST_ROUTES="1", BFF_RATE_LIMIT_PER_MINUTE="100000") as stack:
        run(stack, args.role, args.cold, args.warm)


if __name__ == "__main__":
    main()
