"""Fleet benchmark (issue #16): a load generator that behaves like a desktop fleet, at the
capacity model's rates (DEPLOYMENT_TOPOLOGY §13), against one BFF instance.

    python -m ops.bench fleet [--tenants 1] [--devices-per-tenant 50] [--duration 120]
        [--rate-multiplier 1] [--workers 2] [--loaders 2] [--sim-latency 1] [--seed 16]
        [--out-md docs/BENCHMARKS.md] [--png 'docs/img/fleet-{tenants}.png'] [--py-spy DIR]

``--tenants 10,30,50`` measures each size on a fresh stack, smallest first, and stops after the
first size that misses a target: the ceiling. Each size:

1. a throwaway stack (``ops/bench/stack.py``): the simulator with ``SIM_FLEET_TENANTS`` tenants
   (``tnt-fleet-NNN``, one hotel each), its production-like latencies (``--sim-latency 1``),
   publishing onto the BFF's bus; the BFF with ``BFF_WORKERS`` workers; a scratch database;
2. ``--loaders`` load processes (``ops/bench/fleet_load.py``), each owning whole tenants: every
   device enrols with its own key and signs in, reads its hotel, opens its SSE stream — all
   before the window, timed;
3. the baseline: bare ``/health/live``, closed loop, c=32, 5 s, with every stream open;
4. the window (``--duration`` s): every loader runs its share of one seeded schedule (heartbeats,
   dashboards, workbench boards, offline queues of mutations, a tenth of them replayed with the
   same keys, lock keys, sync handshakes), while this process raises alerts and AI suggestions
   at the simulator (each tenant's first desk acknowledges / decides them from its stream) and
   samples the CPU and RSS of the BFF, the simulator and the loaders from ``/proc`` every second;
5. the simulator's own latency per upstream over the window (its call log).

How the 2 cores are shared: nothing is pinned; the BFF (its workers), the simulator, Postgres,
Redis and the loaders all compete, and the report says how much of the 2 cores each took. The
loaders are cheap per request (raw sockets, one proof each) and split the fleet in two, so that
neither holds a core's worth of streams alone.

Everything stays on loopback (refused otherwise), and a run is bounded: the schedule is fixed
before the window (``--max-requests``), the window by ``--duration``, and what is still running
30 s after it (a queue draining) is cut and counted as failed.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from ops.bench.fleet_model import (
    QUEUE_LENGTH,
    RATES,
    REPLAY_SHARE,
    LoadPlan,
    LoadResult,
    Raise,
    TenantSlice,
    property_id,
    raises,
    schedule,
    tenant_id,
)
from ops.bench.fleet_report import (
    FleetRun,
    Resources,
    ceiling_markdown,
    met,
    plot,
    replace_section,
    run_markdown,
)
from ops.bench.saturation import (
    LoadProcess,
    Processes,
    charged_to,
    machine_busy_s,
    profiled,
)
from ops.bench.sse import Proc, child_running
from ops.bench.sse_client import raise_fd_limit
from ops.bench.stack import bench_stack, percentiles

LIVE_CONCURRENCY = 32
START_DELAY_S = 2.0  # every loader has the window's start before it opens
SECTION = "fleet-bench {sizes}"  # one section per list of sizes: re-running one replaces it
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class FleetConfig:
    tenants: int
    devices_per_tenant: int = 50
    seconds: float = 120.0
    multiplier: float = 1.0
    loaders: int = 2
    workers: int = 1
    seed: int = 16
    max_requests: int = 500_000
    live_seconds: float = 5.0  # the /health/live baseline
    py_spy: Path | None = None  # profile the BFF's processes over the window, into this folder


@dataclass(frozen=True)
class FleetTarget:
    """The BFF and simulator under test: URLs, and the processes to watch in ``/proc``."""

    bff_url: str
    sim_url: str
    bff_pid: int
    sim_pid: int


def say(text: str) -> None:
    print(f"[fleet] {text}", flush=True)


# --- the load processes ------------------------------------------------------------------


class Loader(LoadProcess):
    """``python -m ops.bench.fleet_load <index>``: one JSON command and answer a line."""

    def __init__(self, index: int, log_dir: Path) -> None:
        super().__init__(
            log_dir, "ops.bench.fleet_load", str(index), log_name=f"loader-{index}.log"
        )


@contextmanager
def loaders(count: int, log_dir: Path) -> Iterator[list[Loader]]:
    started = [Loader(i, log_dir) for i in range(count)]
    try:
        yield started
    finally:
        for loader in started:
            loader.stop()


def each(procs: list[Loader], cmd: str, fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same command to every loader at once (each with its own fields)."""
    with ThreadPoolExecutor(len(procs)) as pool:
        return list(pool.map(lambda p, f: p.call(cmd, **f), procs, fields))


# --- one run -----------------------------------------------------------------------------


def plans(config: FleetConfig, target: FleetTarget, count: int) -> list[LoadPlan]:
    """Whole tenants per loader (a tenant's offline queues are planned in one place)."""
    rng = random.Random(config.seed)
    tasks = schedule(
        config.tenants, config.devices_per_tenant, config.seconds, config.multiplier, rng
    )
    if len(tasks) > config.max_requests:
        raise SystemExit(f"{len(tasks):,} tasks scheduled: over --max-requests")
    out = []
    for index in range(count):
        mine = [n for n in range(1, config.tenants + 1) if (n - 1) % count == index]
        out.append(
            LoadPlan(
                bff_url=target.bff_url,
                sim_url=target.sim_url,
                tenants=[TenantSlice(n, config.devices_per_tenant) for n in mine],
                tasks=[t for t in tasks if t.tenant in mine],
                seed=config.seed,
            )
        )
    return out


def run_fleet(config: FleetConfig, target: FleetTarget, log_dir: Path) -> FleetRun:
    """Sign in, open the streams, measure the baseline, run the window; what it measured."""
    for url in (target.bff_url, target.sim_url):
        if urlsplit(url).hostname not in LOOPBACK:
            raise SystemExit(f"{url}: the fleet benchmark runs only against loopback")
    count = max(1, min(config.loaders, config.tenants))
    loads = plans(config, target, count)
    say(f"{sum(len(p.tasks) for p in loads):,} request tasks scheduled over {count} loaders")
    with loaders(count, log_dir) as procs:
        plan_files = []
        for index, plan in enumerate(loads):
            plan_file = log_dir / f"plan-{index}.msgpack"
            plan_file.write_bytes(msgspec.msgpack.encode(plan))
            plan_files.append({"plan": str(plan_file)})
        began = time.perf_counter()
        setups = each(procs, "setup", plan_files)
        signin_s = time.perf_counter() - began
        devices = sum(s["devices"] for s in setups)
        say(f"{devices:,} devices signed in in {signin_s:.1f} s")
        demo_s = max(d["seconds"] for d in each(procs, "demo", [{}] * count))
        began = time.perf_counter()
        opened = each(procs, "open", [{}] * count)
        open_s = time.perf_counter() - began
        say(f"{sum(len(o['latencies']) for o in opened):,} streams open in {open_s:.1f} s")
        live = procs[0].call("live", seconds=config.live_seconds, concurrency=LIVE_CONCURRENCY)
        say(f"baseline /health/live: {live['requests'] / live['seconds']:,.0f} req/s")
        name = f"fleet-{config.tenants}"
        with profiled(config.py_spy, name, Processes((target.bff_pid,))):
            window = trio.run(_window, config, target, procs, log_dir)
    results = [
        msgspec.msgpack.decode((log_dir / f"result-{i}.msgpack").read_bytes(), type=LoadResult)
        for i in range(count)
    ]
    return FleetRun(
        tenants=config.tenants,
        devices_per_tenant=config.devices_per_tenant,
        seconds=config.seconds,
        multiplier=config.multiplier,
        workers=config.workers,
        loaders=count,
        devices=devices,
        signin_failed=_merged(s["failed"] for s in setups),
        signin_s=signin_s,
        demo_s=demo_s,
        streams_failed=_merged(o["failed"] for o in opened),
        open_s=open_s,
        open_latencies=[x for o in opened for x in o["latencies"]],
        live=live,
        results=results,
        published=window.published,
        raise_errors=window.raise_errors,
        upstream_ms=window.upstream_ms,
        resources=window.resources,
        profile=profile_line(config.py_spy, name) if config.py_spy else "",
    )


def _merged(counts: Iterator[dict[str, int]] | Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for found in counts:
        for key, n in found.items():
            total[key] = total.get(key, 0) + n
    return total


@dataclass
class Window:
    published: dict[str, tuple[float, int]]
    raise_errors: int
    upstream_ms: dict[str, tuple[int, float]]
    resources: Resources


async def _window(
    config: FleetConfig, target: FleetTarget, procs: list[Loader], log_dir: Path
) -> Window:
    start_at = time.time() + START_DELAY_S
    window = Window({}, 0, {}, Resources())
    rng = random.Random(config.seed + 1)
    events = raises(
        config.tenants, config.devices_per_tenant, config.seconds, config.multiplier, rng
    )
    fields = [
        {
            "start_at": start_at,
            "seconds": config.seconds,
            "out": str(log_dir / f"result-{i}.msgpack"),
        }
        for i in range(len(procs))
    ]
    finished = trio.Event()  # every loader's last request answered (or timed out)

    async def run_loaders() -> None:
        await trio.to_thread.run_sync(each, procs, "run", fields)
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_loaders)
        await trio.sleep(max(0.0, start_at - time.time()))
        opened = trio.current_time()
        nursery.start_soon(_sample, target, procs, window.resources, opened)
        await _raise_all(target.sim_url, events, opened, window)
        await finished.wait()
        nursery.cancel_scope.cancel()  # the sampler: it covered the window and its drain
    window.upstream_ms = await _upstream_latency(target.sim_url, start_at, config.seconds)
    return window


async def _raise_all(sim_url: str, events: list[Raise], opened: float, window: Window) -> None:
    """An alert or a suggestion at its time: the simulator creates it and publishes the event
    (the time is taken just before asking, on the loaders' clock)."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=30) as http:
        for event in events:
            await trio.sleep_until(opened + event.at)
            body = {
                "kind": event.kind,
                "tenantId": tenant_id(event.tenant),
                "propertyId": property_id(event.tenant),
            }
            published = time.time()
            try:
                answer = await http.post("/_sim/raise", json=body)
                answer.raise_for_status()
            except httpx.HTTPError:
                window.raise_errors += 1
                continue
            prefix = "alert" if event.kind == "alert" else "ai"
            window.published[f"{prefix}:{answer.json()['id']}"] = (published, event.tenant)


async def _sample(target: FleetTarget, procs: list[Loader], res: Resources, opened: float) -> None:
    """CPU (cores used over the last second) and RSS, once a second, from /proc."""
    bff = Processes((target.bff_pid,))
    sim = Proc(target.sim_pid)
    loaders = [Proc(p.proc.pid) for p in procs]

    def read() -> tuple[float, float, float, float, float]:
        snap = bff.snapshot()
        rss = sum(_rss_kib(pid) for pid in snap) / 1024
        return (
            sum(snap.values()),
            rss,
            sim.cpu_s(),
            sum(p.cpu_s() for p in loaders),
            machine_busy_s(),
        )

    last, then = read(), trio.current_time()
    while True:
        await trio.sleep(1.0)
        now_values, now = read(), trio.current_time()
        span = now - then
        res.at.append(now - opened)
        res.bff_cores.append((now_values[0] - last[0]) / span)
        res.bff_rss_mib.append(now_values[1])
        res.sim_cores.append((now_values[2] - last[2]) / span)
        res.load_cores.append((now_values[3] - last[3]) / span)
        res.busy_cores.append((now_values[4] - last[4]) / span)
        last, then = now_values, now


def _rss_kib(pid: int) -> int:
    try:
        return Proc(pid).rss_kib()
    except (OSError, RuntimeError):
        return 0


async def _upstream_latency(
    sim_url: str, start_at: float, seconds: float
) -> dict[str, tuple[int, float]]:
    """The simulator's own time per upstream call received in the window (its latency model
    plus its handler), from its call log (the last 5,000 calls per upstream)."""
    async with httpx.AsyncClient(base_url=sim_url, timeout=60) as http:
        answer = await http.get("/_sim/calls", params={"kind": "all"})
        answer.raise_for_status()
    begin = datetime.fromtimestamp(start_at, UTC)
    end = datetime.fromtimestamp(start_at + seconds, UTC)
    durations: dict[str, list[float]] = {}
    for call in answer.json()["items"]:
        received = datetime.fromisoformat(call["receivedAt"].replace("Z", "+00:00"))
        if begin <= received <= end and call["status"]:
            durations.setdefault(call["service"], []).append(call["durationMs"] / 1000)
    return {s: (len(d), percentiles(d)[1]) for s, d in durations.items()}


# --- the command -------------------------------------------------------------------------


def profile_line(out: Path, name: str) -> str:
    """The profile's samples by package (``saturation.charged_to``), for the report."""
    groups: Counter[str] = Counter()
    for file in out.glob(f"{name}-*.txt"):
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                groups[charged_to(stack)] += int(count)
    total = sum(groups.values()) or 1
    shares = ", ".join(f"{g} {n / total:.0%}" for g, n in groups.most_common(8))
    return f"py-spy on the BFF over the window ({out}/{name}-*.txt): {shares}"


def measure(config: FleetConfig, sim_latency: str) -> FleetRun:
    """One size on a throwaway stack."""
    sim_env = {
        "SIM_LATENCY": sim_latency,
        "SIM_BUS": "auto",
        "SIM_FLEET_TENANTS": str(config.tenants),
        # no desktop here refreshes its token: an hour covers sign-in, streams and the window
        "SIM_ACCESS_TTL_S": "3600",
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bff-fleet-"))
    say(f"{config.tenants} tenants x {config.devices_per_tenant} devices; logs in {log_dir}")
    with bench_stack(sim_env=sim_env, BFF_WORKERS=str(config.workers)) as stack:
        bff, sim = child_running("edge"), child_running("ops.sim")
        target = FleetTarget(stack.bff_url, stack.sim_url, bff.pid, sim.pid)
        return run_fleet(config, target, log_dir)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.bench fleet", description=__doc__)
    parser.add_argument("--tenants", default="1", help="a size, or sizes: 10,30,50")
    parser.add_argument("--devices-per-tenant", type=int, default=50)
    parser.add_argument("--duration", type=float, default=120.0, help="window, seconds")
    parser.add_argument("--rate-multiplier", type=float, default=1.0, help="time compression")
    parser.add_argument("--workers", type=int, default=2, help="BFF_WORKERS (2 = one per vCPU)")
    parser.add_argument("--loaders", type=int, default=2, help="load processes")
    parser.add_argument("--sim-latency", default="1", help="SIM_LATENCY (1 = production-like)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=500_000)
    parser.add_argument("--out-md", type=Path, help="replace/append the fleet section here")
    parser.add_argument("--png", help="plot path; {tenants} is replaced by the size")
    parser.add_argument("--py-spy", type=Path, help="profile the BFF in each window (DIR)")
    parser.add_argument("--keep-going", action="store_true", help="past a missed size too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    raise_fd_limit()  # inherited by the BFF and the simulator: thousands of streams
    sizes = sorted(int(n) for n in str(args.tenants).split(","))
    command = "python -m ops.bench fleet " + shlex.join(sys.argv[1:] if argv is None else argv)
    load = os.getloadavg()
    runs: list[FleetRun] = []
    sections: list[str] = []
    for tenants in sizes:
        config = FleetConfig(
            tenants=tenants,
            devices_per_tenant=args.devices_per_tenant,
            seconds=args.duration,
            multiplier=args.rate_multiplier,
            loaders=args.loaders,
            workers=args.workers,
            seed=args.seed,
            max_requests=args.max_requests,
            py_spy=args.py_spy,
        )
        run = measure(config, args.sim_latency)
        runs.append(run)
        png = args.png.format(tenants=tenants) if args.png else None
        if png:
            plot(run, Path(png))
        sections.append(run_markdown(run, _relative(png, args.out_md)))
        print("\n" + sections[-1] + "\n", flush=True)
        if not met(run) and not args.keep_going:
            break
    text = _section(command, load, sections, runs)
    print(ceiling_markdown(runs))
    if args.out_md:
        before = args.out_md.read_text() if args.out_md.exists() else ""
        section = SECTION.format(sizes=",".join(map(str, sizes)))
        args.out_md.write_text(replace_section(before, text, section))
        say(f"wrote the fleet section of {args.out_md}")


def _per(per_minute: float) -> str:
    return f"{per_minute:g}/min" if per_minute >= 1 else f"{per_minute * 60:.0f}/h"


def _relative(png: str | None, md: Path | None) -> str | None:
    if png is None or md is None:
        return png
    return os.path.relpath(Path(png).resolve(), md.resolve().parent)


def _section(
    command: str, load: tuple[float, float, float], sections: list[str], runs: list[FleetRun]
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"## Fleet (issue #16): {', '.join(str(r.tenants) for r in runs)} tenants",
        "",
        f"`.venv/bin/{command}` — run of {when}, load average {load[0]:.2f} at the start,"
        " 2 shared cores (BFF, simulator, Postgres, Redis and the load generators).",
        "",
        "Offered per tenant of 50 desktops (times `--rate-multiplier`; every activity at"
        " least once per run): "
        + "; ".join(f"{r.activity} {_per(r.per_tenant_per_min)} ({r.source})" for r in RATES)
        + f". Offline queues of {QUEUE_LENGTH} mutations (check-in/out, folio charge,"
        f" housekeeping and maintenance transitions), {REPLAY_SHARE:.0%} of them sent again"
        " unchanged. Each desktop has its own key, session, SSE stream and connections.",
        "",
    ]
    return "\n".join([*head, "\n\n".join(sections), "", ceiling_markdown(runs)])


if __name__ == "__main__":
    main()
